#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make install`: the module built against the cached kernel of flavor $1
# (under $DESTDIR/lib/modules/<release>/updates/, as kbuild installs an
# external module; depmod runs there), then through tools/lib/syslet's
# install: the UAPI header (<linux/syslet.h>), libsyslet.h, libsyslet.a,
# libsyslet.so with its links, libsyslet.pc, the man pages (sections 3 and
# 7), and this reference under $PREFIX/share/doc/syslet.
#
# Usage: install.sh FLAVOR DESTDIR PREFIX (DESTDIR may be empty: the system).

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

flavor=${1:-test} destdir=${2:-} prefix=${3:-/usr/local}
"$REPO/scripts/bootstrap.sh"
TREE=$("$REPO/scripts/kernel.sh" "$flavor")
build_module
release=$(cat "$TREE/include/config/kernel.release")
log "install: syslet.ko for $release into $destdir/lib/modules/$release/updates"
# Into a staging directory, depmod is left to whoever installs from it.
depmod=()
[ -z "$destdir" ] || depmod=(DEPMOD=true)
make "${MAKE_QUIET[@]}" -C "$TREE" M="$REPO/drivers/syslet" LLVM="$LLVM_SUFFIX" \
	RUSTC="$RUSTC" INSTALL_MOD_PATH="$destdir" "${depmod[@]}" modules_install >&2
log "install: header, libsyslet, man pages into $destdir$prefix"
make "${MAKE_QUIET[@]}" -C "$REPO/tools/lib/syslet" OUTPUT="$CACHE/out/lib/" \
	DESTDIR="$destdir" PREFIX="$prefix" install >&2
install -d "$destdir$prefix/share/doc/syslet"
install -m 644 "$REPO/Documentation/userspace-api/syslet.rst" "$destdir$prefix/share/doc/syslet/"
