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

# The Debian mirror the system's apt sources name (empty if none). The
# private apt configurations and debootstrap fetch from it.
debian_mirror() {
	grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
		/etc/apt/sources.list 2>/dev/null |
		grep -o -E 'https?://[^ ]+/debian/?$' | head -n1 || true
}

# Sets APT_PRIVATE: apt-get options for a private configuration in directory
# $1 (its sources.list, lists and downloads), so the system's apt sources
# and state are never read or written.
apt_private() {
	mkdir -p "$1/lists/partial" "$1/archives/partial"
	APT_PRIVATE=(
		-o "Dir::Etc::sourcelist=$1/sources.list"
		-o "Dir::Etc::sourceparts=-"
		-o "Dir::State::Lists=$1/lists"
		-o "Dir::Cache::archives=$1/archives"
		-o "Dir::Cache::pkgcache=$1/pkgcache.bin"
		-o "Dir::Cache::srcpkgcache=$1/srcpkgcache.bin"
		-o "Dir::Etc::preferencesparts=-"
		-o "APT::Get::List-Cleanup=0"
	)
}

# Runs a check ("step NAME COMMAND..."), printing "ok NAME" or "not ok NAME";
# a failure sets STEP_FAILED=1 (scripts/intree.sh, scripts/deb.sh).
STEP_FAILED=0
step() {
	local name=$1
	shift
	if "$@"; then
		echo "ok $name"
	else
		echo "not ok $name"
		STEP_FAILED=1
	fi
}
