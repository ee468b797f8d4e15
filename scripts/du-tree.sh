#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Makes (once) the tree syslet_du walks in the main command, and an ISO 9660
# image of it: 32 directories of 32 files each (1 to 32 KiB of pseudo-random
# bytes, about 17 MiB in all), two levels deep. The guest mounts the image
# through a loop device, so that with its page cache dropped every read is
# real block I/O that blocks. Deterministic: the same tree each time. Prints
# the image's path.

set -euo pipefail
. "$(dirname "$0")/common.sh"

tree=$CACHE/du-tree
image=$CACHE/du-tree.iso
if [ ! -f "$image" ]; then
	log "du: generating the tree and its image in $CACHE"
	rm -rf "$tree"
	python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(2007)
for d in range(32):
    path = os.path.join(root, "d%02d" % d, "sub%d" % (d % 4))
    os.makedirs(path, exist_ok=True)
    for f in range(32):
        size = rng.randint(1, 32) * 1024
        with open(os.path.join(path, "f%02d" % f), "wb") as out:
            out.write(rng.randbytes(size))
PY
	genisoimage -quiet -R -o "$image.tmp" "$tree"
	mv "$image.tmp" "$image"
fi
echo "$image"
