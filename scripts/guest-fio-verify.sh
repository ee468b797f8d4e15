#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest, with the module loaded: fio writes a 16 MiB file
# through the syslet ioengine (tools/fio/) and reads it back with
# verify=crc32c, once naming a continuation (spares take fio over when a
# call blocks) and once without. fio syncs the file and drops its page
# cache before verifying, so on a disk-backed scratch directory the verify
# reads miss and block (on tmpfs they all hit). Prints one TAP line:
# "ok N guest.fio_verify_crc32c" or "not ok N ...", with the reason as a
# "#" comment.
#
# Usage: guest-fio-verify.sh SYSLET_SO SCRATCH_DIR [N]   (N: the TAP number, default 1)

so=$1
dir=$2
n=${3:-1}
name=guest.fio_verify_crc32c
size=$((16 << 20))	# short: 46 s under TCG over 9p (64 MiB took 148 s)

fail() {
	echo "# fio_verify: $*"
	echo "not ok $n $name"
	exit 1
}

[ -f "$so" ] || fail "no engine at $so"
[ -d "$dir" ] || fail "no scratch directory $dir"
[ -c /dev/syslet ] || fail "no /dev/syslet (module not loaded?)"
command -v fio >/dev/null || fail "no fio"

file=$dir/syslet-fio-verify.dat
out=$dir/syslet-fio-verify.terse
# Random 4 KiB writes, each block once (fio's random map), then every block
# read back and checked; verify_fatal stops at the first bad block. One job
# per mode, one after the other, each with its own file.
fio --output-format=terse --terse-version=3 --output="$out" \
	--ioengine="external:$so" --size=$size --bs=4k --rw=randwrite --iodepth=16 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 \
	--name=continuation --filename="$file.1" --continuation=1 \
	--name=no_continuation --filename="$file.0" --continuation=0 --stonewall \
	>"$out.log" 2>&1
status=$?
rm -f "$file.1" "$file.0"
if [ $status -ne 0 ]; then
	sed 's/^/# /' "$out.log" | tail -20
	fail "fio exited with $status"
fi

# Terse v3: field 3 the job, 5 its error, 6 KiB read. The job only writes,
# so what it read is what it verified: all of it.
report=$(awk -F';' -v want=$((size >> 10)) '
	$1 == 3 {
		jobs++
		if ($5 != 0) bad = bad " " $3 ": error " $5
		else if ($6 != want) bad = bad " " $3 ": verified " $6 " KiB of " want
	}
	END {
		if (jobs != 2) bad = bad " " jobs + 0 " job reports, not 2"
		printf "%s", bad
	}' "$out")
[ -z "$report" ] || { sed 's/^/# /' "$out.log" | tail -20; fail "$report"; }

# thread=1 jobs run on pthread stacks, which libsyslet never hands to a
# spare: the engine refuses continuation=1 there rather than measure
# something else.
if fio --ioengine="external:$so" --thread --continuation=1 --name=refused \
	--filename="$file.t" --size=1m --rw=read >"$out.log" 2>&1 ||
	! grep -q 'continuation=1 needs fio.s process mode' "$out.log"; then
	sed 's/^/# /' "$out.log" | tail -5
	rm -f "$file.t"
	fail "thread=1 with continuation=1 was not refused"
fi
rm -f "$file.t"
echo "ok $n $name"
