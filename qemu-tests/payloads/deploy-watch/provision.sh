#!/bin/sh
# Stands in for a long provisioning step (package installs, a database restore): five steps of
# three seconds, each reporting its progress.
for i in 1 2 3 4 5; do
    echo "provision: step $i of 5 ($((i * 20))%)"
    sleep 3
done
echo "provision: done"
