#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The main command: bootstrap, build (or reuse) the kernel, build the module
# and the sample, boot the kernel under virtme-ng, insert the module and run
# samples/syslet/syslet_demo, which prints each atom's result and fdinfo.

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

"$REPO/scripts/bootstrap.sh"
TREE=$("$REPO/scripts/kernel.sh")
build_module
build_user
choose_accel
run_guest "insmod '$REPO/drivers/syslet/syslet.ko' && '$OUT/samples/syslet_demo' && rmmod syslet && dmesg | tail -3"
