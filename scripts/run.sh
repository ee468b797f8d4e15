#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The main command: bootstrap, build (or reuse) the kernel, build the module
# and the sample, boot the kernel under virtme-ng, insert the module and run
# samples/syslet/syslet_demo, which prints each atom's result and fdinfo,
# then samples/syslet/syslet_bench (ratios against plain system calls,
# io_uring and threads, measured in the same run), then the application,
# samples/syslet/syslet_du, over a generated tree (scripts/du-tree.sh),
# cold and warm, against a thread pool and a plain loop (scripts/guest-du.sh),
# and the network sample, samples/syslet/syslet_httpd, at 100 connections.

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

prepare_guest release
image=$("$REPO/scripts/du-tree.sh")
run_guest "insmod '$REPO/drivers/syslet/syslet.ko' && '$OUT/samples/syslet_demo' && echo &&
	'$OUT/samples/syslet_bench' -r 1 -s B1,B2,T 2>/dev/null && echo &&
	'$REPO/scripts/guest-du.sh' '$OUT/samples/syslet_du' '$image' && echo &&
	echo 'syslet_httpd (the network sample; scripts/bench-net.sh for 1,000 and 10,000 connections):' &&
	for m in syslet epoll uring; do '$OUT/samples/syslet_httpd' -m \$m -c 100 -r 20; done &&
	rmmod syslet" 2>&1 | cat	# a pipe: vng truncates a file given as its stderr
