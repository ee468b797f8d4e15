#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make clean`: the module's build output in drivers/syslet/ and the user
# programs in $CACHE/out. The cached kernel trees, the Rust crate's target
# directory and the downloads stay: they are keyed by what built them and
# reused (remove $CACHE by hand to start from nothing).

set -euo pipefail
. "$(dirname "$0")/common.sh"

cd "$REPO/drivers/syslet"
rm -f ./*.o ./*.ko ./*.mod ./*.mod.c ./.*.cmd ./*.d ./*.rmeta modules.order \
	Module.symvers uapi_generated.rs
rm -rf "$CACHE/out"
log "clean: drivers/syslet and $CACHE/out (kernels kept in $CACHE/src)"
