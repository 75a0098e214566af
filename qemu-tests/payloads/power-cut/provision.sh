#!/bin/sh
# Stands in for a provisioning step that writes into the target for a while (~2 s), so that a
# power cut can land in the middle of it.
set -eu
echo "provision: writing /etc/provisioned"
echo "step 1" >/etc/provisioned
sleep 1
echo "step 2" >>/etc/provisioned
sleep 1
echo "provision: done"
