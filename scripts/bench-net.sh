#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The network benchmark: samples/syslet/syslet_httpd's three servers (syslet
# on the pollable path, epoll + a thread pool, io_uring), each under the same
# load generator over loopback, at 100, 1,000 and 10,000 connections, in one
# guest session on the release kernel. Prints requests per second, p50/p99
# latency and the server's peak threads for each.
#
# Usage: scripts/bench-net.sh [CONNS...]. SYSLET_BENCH_FLAVOR=test runs it on
# the test kernel (lockdep: slower, only to check that it works).

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

prepare_guest "${SYSLET_BENCH_FLAVOR:-release}"
conns=("${@:-100 1000 10000}")
# Requests per connection: about 2000 requests a run, at least 2 each.
run_guest "insmod '$REPO/drivers/syslet/syslet.ko' &&
	echo 'syslet_httpd: one GET of a 4 KiB file per request, keep-alive, loopback, 2 vCPUs' &&
	for c in ${conns[*]}; do
		r=\$((2000 / c)); [ \$r -ge 2 ] || r=2
		for m in syslet epoll uring; do
			'$OUT/samples/syslet_httpd' -m \$m -c \$c -r \$r || echo \"  \$m \$c conns: failed (\$?)\"
		done
	done && rmmod syslet" 2>&1 | cat	# a pipe: vng truncates a file given as its stderr
