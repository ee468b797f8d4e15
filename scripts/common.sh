# SPDX-License-Identifier: GPL-2.0
#
# Shared settings for the syslet scripts. Sourced, not run.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SYSLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/syslet}
VNG_VENV=$CACHE/virtme-ng
# The kernel version: Debian's linux-source-$KVER. CI builds the default; see
# "Kernel versions" in the README for the other one.
KVER=${SYSLET_KVER:-7.2}
LLVM_SUFFIX=-19
export PATH="$HOME/.cargo/bin:$VNG_VENV/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

mkdir -p "$CACHE"

# The rustc the kernel and module are built with: rustup's, unless bootstrap
# had to fall back to Debian's rustc-web (recorded in toolchain.env).
RUSTC=rustc
[ -f "$CACHE/toolchain.env" ] && . "$CACHE/toolchain.env"
export RUSTC

log() {
	printf '%s\n' "$*" >&2
}

# V=1 (make V=1, or SYSLET_V=1): every command shown, as kbuild does.
if [ "${SYSLET_V:-0}" = 1 ]; then
	MAKE_QUIET=(V=1)
	set -x
else
	MAKE_QUIET=(-s)
fi
