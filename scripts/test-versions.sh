#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check-versions`: the test command on every kernel version the
# project supports, one after the other: the default (CI's) and the newer
# one, each with its own cached tree (SYSLET_KVER picks it; see "Kernel
# versions" in the README). Ends with one summary line per version.

set -euo pipefail
. "$(dirname "$0")/common.sh"

VERSIONS=(7.2 7.3)
summaries=()
status=0
for v in "${VERSIONS[@]}"; do
	log "versions: the suite on linux-source-$v"
	line=$(SYSLET_KVER=$v "$REPO/scripts/test.sh" | tee /dev/stderr | tail -n 1) || status=1
	summaries+=("linux-source-$v: $line")
done
printf '%s\n' "${summaries[@]}"
exit $status
