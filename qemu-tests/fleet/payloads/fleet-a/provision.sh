#!/bin/sh
# Names the deployed system after the payload's hostname (its init prints /etc/hostname).
echo "$ANEMOS_HOSTNAME" > /etc/hostname
echo "provision: hostname $(cat /etc/hostname)"
