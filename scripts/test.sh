#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The test command: bootstrap, build (or reuse) the kernel, build the module
# and kselftests, boot the kernel under virtme-ng, run the suite there and
# scan the guest's dmesg. Ends with "N passed, N failed[, N skipped]".

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

prepare_guest test

log "guest: running the syslet kselftests"
results=$(mktemp -d "$CACHE/results.XXXXXX")
out=$results/log
touch "$out"
run_guest "scripts/guest-test.sh '$REPO/drivers/syslet/syslet.ko' '$OUT/selftests' '$out'" \
	--rwdir "$results" --verbose >"$results/console" 2>&1 || true
cat "$out"

passed=$(grep -cE '^ok [0-9]+ ' "$out" || true)
skipped=$(grep -cE '^ok [0-9]+ .*# SKIP' "$out" || true)
failed=$(grep -cE '^not ok [0-9]+ ' "$out" || true)
passed=$((passed - skipped))
if ! grep -q '^syslet-guest: done' "$out"; then
	echo "the guest did not finish (crash, panic or timeout); its console:"
	grep -v "^\[.*virtme-ng-init" "$results/console" | tail -n 80
	failed=$((failed + 1))
fi
rm -rf "$results"
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary+=", $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
