#!/bin/sh
echo "step 1: pretending to build"
echo "step 2: something goes wrong"
echo "error: the build failed on purpose" >&2
exit 1
