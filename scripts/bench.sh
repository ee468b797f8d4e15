#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The benchmark command: syslet against plain system calls, io_uring, Linux
# AIO, thread pools and fio, every contender in one guest session on the
# release kernel (samples/syslet/syslet_bench: B1 inline cost, B2 handoff
# latency, B3 O_DIRECT reads from null_blk at depth 1, 8 and 32, B4 mixed
# hits and misses, B5 threads per operation in flight), then fio running B3
# and B4 from the same job files (bench/fio/) for its syslet ioengine
# (tools/fio/), io_uring, libaio and psync. Writes bench/results.json (every
# raw figure), bench/results.png, the README's table (scripts/bench-report.py)
# and fio's own JSON reports in bench/fio/results/.
#
# Usage: scripts/bench.sh [REPS]   (default 5 repetitions)
# SYSLET_BENCH_OPS: operations per B1 row (default 20000; B3/B4 scale with it).
# SYSLET_BENCH_FLAVOR=profile: the same on the profile flavor (function graph
# tracer built in; its figures are not the published ones).
# SYSLET_BENCH_PERF=1: also record a cpu-clock profile (perf) of a one-atom
# exec loop and of the handoff loop, printed after the figures (perf-*.txt in
# the run directory, $CACHE/bench-run).

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

reps=${1:-5}
ops=${SYSLET_BENCH_OPS:-20000}
flavor=${SYSLET_BENCH_FLAVOR:-release}
start=$(date +%s)
prepare_guest "$flavor"
# The plot needs Debian's matplotlib, for Debian's python3; only this command
# does.
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
	log "bench: installing python3-matplotlib"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		python3-matplotlib >/dev/null
fi
run=$CACHE/bench-run
rm -rf "$run"
mkdir -p "$run"
# null_blk: one memory-backed 4 GiB device whose requests complete from a
# timer 100 us after submission (irqmode=2), as a fast SSD would.
nullb="null_blk.nr_devices=1 null_blk.gb=4 null_blk.memory_backed=1 null_blk.irqmode=2 null_blk.completion_nsec=100000"
# What the guest runs, as a script of its own (no quoting through vng).
cat >"$run/guest-bench.sh" <<GUEST
set -e
insmod '$REPO/drivers/syslet/syslet.ko'
'$OUT/samples/syslet_bench' -r $reps -n $ops -j '$run/syslet-bench.json'
# fio: the same job files for every engine; the syslet engine is an external
# one. psync is synchronous (fio caps its depth at 1): B3 runs it as
# numjobs=depth threads of depth 1, B4 at depth 1.
engine_arg() {
	if [ "\$1" = syslet ]; then echo 'external:$OUT/fio/syslet.so'; else echo "\$1"; fi
}
for d in 1 8 32; do
	echo "[fio B3 depth \$d] syslet, io_uring, libaio, psync" >&2
	for engine in syslet io_uring libaio psync; do
		jobs=
		[ \$engine = psync ] && jobs="--numjobs=\$d --group_reporting"
		ENGINE=\$(engine_arg \$engine) fio --output-format=json --section=depth\$d \$jobs \\
			'$REPO/bench/fio/b3-randread.fio' >'$run/fio-b3-'\$engine-\$d.json
	done
done
echo "[fio B4] syslet, io_uring, libaio, psync" >&2
for engine in syslet io_uring libaio psync; do
	ENGINE=\$(engine_arg \$engine) fio --output-format=json \\
		'$REPO/bench/fio/b4-cached.fio' >'$run/fio-b4-'\$engine.json
done
GUEST
if [ "${SYSLET_BENCH_PERF:-0}" = 1 ]; then
	# A cpu-clock profile of one-atom execs (E), the same naming a
	# continuation (C), and handoffs (B2); perf's data must be on a local
	# file system.
	for s in E C B2; do
		cat >>"$run/guest-bench.sh" <<GUEST
perf record -q -a -g -e cpu-clock -F 10000 -o /dev/shm/\$\$.data -- \\
	'$OUT/samples/syslet_bench' -r 1 -s $s -n $ops >/dev/null 2>&1
perf report --kallsyms=/proc/kallsyms -i /dev/shm/\$\$.data --stdio --no-children \\
	--sort sym -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^\$' |
	head -40 >'$run/perf-$s.txt'
GUEST
	done
fi
echo "rmmod syslet" >>"$run/guest-bench.sh"
log "bench: $reps repetitions on the $flavor kernel; progress below"
# Through a pipe: vng truncates a file given as its standard error.
run_guest "sh '$run/guest-bench.sh'" --rwdir "$run" --append "$nullb" 2>&1 | cat
/usr/bin/python3 "$REPO/scripts/bench-report.py" "$run" "$REPO"
rm -rf "$REPO/bench/fio/results"
mkdir -p "$REPO/bench/fio/results"
cp "$run"/fio-*.json "$REPO/bench/fio/results/"
for f in "$run"/perf-*.txt; do
	[ -f "$f" ] || continue
	echo "== $(basename "$f")"
	cat "$f"
	cp "$f" "$REPO/bench/"
done
log "bench: done in $(($(date +%s) - start)) s; bench/results.json, bench/results.png, README.md"
