#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download Debian's fio source package into the cache through a private apt
# configuration, unpack it (Debian's patches applied) and run fio's
# ./configure there once: tools/fio/ builds the external syslet ioengine
# against these headers, because Debian's fio package ships none. The
# system's apt sources are never touched: the private sources list, lists
# and downloads all live under $CACHE/apt/fio-src (a directory of its own,
# so that fetch-kernel.sh's sources list and lists are left alone). Prints
# the path of the configured source tree, $CACHE/src/fio-$upstream.
#
# The version is the installed fio's (Debian 12: 3.33-3, from bookworm main):
# an external engine shares struct thread_data and struct io_u with the fio
# binary that loads it, so the headers must be that binary's. Without fio
# installed, SYSLET_FIO_VERSION (default 3.33-3) says which.

set -euo pipefail
. "$(dirname "$0")/common.sh"

APT_DIR=$CACHE/apt/fio-src
version=$(dpkg-query -W -f='${Version}' fio 2>/dev/null || true)
version=${version:-${SYSLET_FIO_VERSION:-3.33-3}}
upstream=${version#*:}
upstream=${upstream%-*}
src=$CACHE/src/fio-$upstream
if [ -s "$src/config-host.h" ]; then
	echo "$src"
	exit 0
fi

mkdir -p "$CACHE/src"

# Use the same Debian mirror the system is configured with.
mirror=$(debian_mirror)
[ -n "$mirror" ] || { log "no Debian mirror in the system apt sources"; exit 1; }
apt_private "$APT_DIR"

# Debian 12's own suite: its fio is the one installed. Only a deb-src line:
# apt needs no binary index to fetch a source package.
dsc=$APT_DIR/archives/fio_${upstream}-${version##*-}.dsc
if [ ! -s "$dsc" ]; then
	printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"$mirror" bookworm >"$APT_DIR/sources.list"
	log "fetch-fio-src: looking for the source of fio $version in bookworm"
	apt-get "${APT_PRIVATE[@]}" update -q >/dev/null 2>&1 ||
		{ log "fetch-fio-src: apt-get update failed"; exit 1; }
	# apt checks every file against the signed Sources index; dpkg-source
	# below need not verify the .dsc's signature again.
	(cd "$APT_DIR/archives" &&
	 apt-get "${APT_PRIVATE[@]}" source --download-only -q "fio=$version" >/dev/null 2>&1) ||
		{ log "fetch-fio-src: fio $version not found in bookworm"; exit 1; }
fi

log "fetch-fio-src: extracting $(basename "$dsc")"
tmp=$(mktemp -d "$CACHE/src/fio.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-source --no-check -x "$dsc" "$tmp/fio" >/dev/null
# config-host.h, which every fio header includes. --disable-native: nothing
# tuned to this CPU (Debian's build passes it too). No fio build is needed:
# the engine only includes fio's headers.
log "fetch-fio-src: configuring"
(cd "$tmp/fio" && ./configure --disable-native >configure.out 2>&1) ||
	{ log "fetch-fio-src: fio's configure failed; see $tmp/fio/config.log"; trap - EXIT; exit 1; }
rm -rf "$src"
mv "$tmp/fio" "$src"
echo "$src"
