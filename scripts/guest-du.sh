#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest: syslet_du over the tree image (scripts/du-tree.sh),
# mounted from memory through a loop device, in each mode, first with a cold
# page cache (dropped before each run: every read is block I/O that blocks),
# then warm, and prints the times with their ratio to the plain sequential
# loop in the same cache state.

set -e
bin=$1
image=$2
dir=/tmp/syslet-du

mkdir -p "$dir/mnt"
cp "$image" "$dir/tree.iso"
mount -o loop,ro "$dir/tree.iso" "$dir/mnt"
files=$(find "$dir/mnt" -type f | wc -l)

for cache in cold warm; do
	echo "syslet_du over $files files, $cache page cache:"
	for mode in seq pool syslet threadlet; do
		if [ "$cache" = cold ]; then
			sync
			echo 3 >/proc/sys/vm/drop_caches
		fi
		"$bin" -m "$mode" -t 8 "$dir/mnt"
	done | awk '
		{ t[NR] = $2; line[NR] = $0 }
		END {
			for (i = 1; i <= NR; i++)
				printf "  %s  (%.2fx seq)\n", line[i], t[i] / t[1]
		}'
done
umount "$dir/mnt"
rm -rf "$dir"
