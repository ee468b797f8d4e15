#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything the syslet build, guest and tests need on a Debian 12
# host. Idempotent: prints what it installs and skips what is present.
# Called by scripts/run.sh and scripts/test.sh; never needed by hand.

set -euo pipefail
. "$(dirname "$0")/common.sh"

DEB_PACKAGES=(
	clang-19 lld-19 llvm-19 libclang-19-dev
	bc flex bison libelf-dev libssl-dev cpio busybox-static zstd dwarves
	kmod udev qemu-system-x86 xz-utils rsync python3-pip python3-venv
	liburing-dev fio make gcc libc6-dev patch perl openssl man-db groff-base
	genisoimage linux-perf python3-docutils dpkg-dev debhelper debootstrap
	pkg-config
)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
	if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
		continue
	fi
	missing+=("$pkg")
done
if ((${#missing[@]})); then
	log "bootstrap: installing Debian packages: ${missing[*]}"
	# Package lists may be absent on a new machine.
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >/dev/null
else
	log "bootstrap: Debian packages present"
fi

# The kernel's Rust needs the standard library sources of the same rustc:
# rustup's rust-src, or else Debian's rustc-web with rust-web-src.
sysroot=$("$RUSTC" --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
	log "bootstrap: installing rust-src for $("$RUSTC" --version)"
	if ! rustup component add rust-src; then
		log "bootstrap: rustup has no rust-src; using Debian's rustc-web + rust-web-src"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			rustc-web rust-web-src >/dev/null
		echo "RUSTC=/usr/bin/rustc" >"$CACHE/toolchain.env"
	fi
else
	log "bootstrap: rust-src present ($("$RUSTC" --version))"
fi

# rustfmt, for make intree's check of the driver's formatting.
if ! command -v rustfmt >/dev/null 2>&1; then
	log "bootstrap: installing rustfmt"
	rustup component add rustfmt || log "bootstrap: no rustfmt (make intree's format check will fail)"
fi

# bindgen >= 0.71.1, from crates.io.
if ! command -v bindgen >/dev/null 2>&1; then
	log "bootstrap: installing bindgen-cli from crates.io"
	cargo install --quiet --locked bindgen-cli
else
	log "bootstrap: bindgen present ($(bindgen --version))"
fi

# virtme-ng, from PyPI, in a private virtualenv in the cache.
if [ ! -x "$VNG_VENV/bin/vng" ]; then
	log "bootstrap: installing virtme-ng from PyPI into $VNG_VENV"
	python3 -m venv "$VNG_VENV"
	"$VNG_VENV/bin/pip" install -q virtme-ng
else
	log "bootstrap: virtme-ng present"
fi
