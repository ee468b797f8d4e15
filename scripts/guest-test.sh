#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest: insert the module, run the kselftests, check that
# rmmod is refused while the device is open and works after, and scan dmesg.
# Prints TAP-style "ok N name" / "not ok N name" lines.

ko=$1		# the module's .ko, or "builtin": the kernel has it built in
suites=$2	# directory of kselftest programs
log=$3		# a file on the host: the console may drop early output
programs=${4:-*_test}	# which of the kselftest programs to run

# The first line, written straight to the host's file before anything that
# could crash the guest: test.sh boots again only a guest that died before it.
echo "syslet-guest: started" >"$log"
exec > >(tee -a "$log") 2>&1
n=100

check() {
	local name=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n guest.$name"
	else
		echo "not ok $n guest.$name"
	fi
}

if [ "$ko" = builtin ]; then
	# Built in: the device is there from boot, and no module is loaded.
	check device_node_at_boot test -c /dev/syslet
	check built_in_not_a_module bash -c '! grep -qw "^syslet" /proc/modules'
else
	check insmod insmod "$ko"
	check device_node test -c /dev/syslet
fi
# Root's alone unless udev says otherwise (the guest has no udev rule for it).
check device_node_mode_0600_root bash -c '[ "$(stat -c %a:%u /dev/syslet)" = 600:0 ]'


# Every program the kselftest Makefile built (TEST_GEN_PROGS).
for t in "$suites"/$programs; do
	"$t"
done

# The network sample serves 200 connections on the pollable path: every
# response correct, and no more threads than its loop and spare pool.
# fio, through the syslet ioengine, writes a file and reads it back with
# verify=crc32c, with and without a continuation; the file lives on the
# host (the results directory, 9p), so the reads leave the guest.
if [ "$programs" = "*_test" ]; then
	check httpd_syslet_200_connections "$suites/../samples/syslet_httpd" -q -m syslet -c 200 -r 5
	n=$((n + 1))
	"$(dirname "$0")/guest-fio-verify.sh" "$suites/../fio/syslet.so" "$(dirname "$log")" $n
fi

# While a file is open the module is pinned.
if [ "$ko" != builtin ]; then
	exec 3</dev/syslet
	check rmmod_refused_while_open bash -c '! rmmod syslet 2>/dev/null'
	exec 3<&-
	check rmmod_after_close rmmod syslet
	check device_node_gone test ! -e /dev/syslet
fi

# Real reports only: a lockdep kernel mentions "lockdep" at boot by design,
# and a user program's fault ("traps: prog[pid] general protection fault",
# the fuzzer's workers unmap their own code at times) is no kernel report: a
# kernel's own says "Oops: general protection fault".
# slub_debug (test.sh) reports "BUG kmalloc-64 (Not tainted): Object already
# free" or "[Poison overwritten] 0x...", without "BUG:".
reports='BUG:|WARNING:|Oops|KASAN:|UBSAN:|refcount_t:|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|Call Trace:|kernel BUG|rust_panic|panicked at'
reports+='|\bBUG [^ ]+ \((Not tainted|Tainted)|overwritten\]|Object already free'
dmesg >/tmp/syslet-dmesg.txt
if grep -E "$reports" /tmp/syslet-dmesg.txt; then
	echo "# guest dmesg:"
	sed 's/^/# /' /tmp/syslet-dmesg.txt | tail -80
	check dmesg_clean false
else
	check dmesg_clean true
fi
echo "syslet-guest: done"
# Let tee flush before the guest powers off.
exec >&- 2>&-
wait
