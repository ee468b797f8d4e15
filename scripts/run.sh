#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The main command: bootstrap, build (or reuse) the kernel, build the module
# and the sample, boot the kernel under virtme-ng, insert the module and run
# samples/syslet/syslet_demo, which prints each atom's result and fdinfo,
# then samples/syslet/syslet_bench (ratios against plain system calls,
# io_uring and threads, measured in the same run).

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

prepare_guest release
run_guest "insmod '$REPO/drivers/syslet/syslet.ko' && '$OUT/samples/syslet_demo' && echo &&
	'$OUT/samples/syslet_bench' && rmmod syslet"
