#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make`: the module and the user programs (libsyslet, the kselftests, the
# Rust crate's guest test, the samples) against the cached kernel of the
# given flavor (default test), which is built first if it is missing.
#
# Usage: build.sh [test|release|kasan|profile]

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

"$REPO/scripts/bootstrap.sh"
TREE=$("$REPO/scripts/kernel.sh" "${1:-test}")
build_module
build_user
log "built: $REPO/drivers/syslet/syslet.ko (against $TREE)"
log "       $OUT/lib (libsyslet), $OUT/selftests, $OUT/samples"
