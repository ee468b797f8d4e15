#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download Debian's linux-source-$KVER into the cache through a private apt
# configuration (Debian 12's own suites lack it). The system's apt sources
# are never touched: the private sources list, lists and archives all live
# under $CACHE/apt. Prints the path of the source tarball.

set -euo pipefail
. "$(dirname "$0")/common.sh"

APT_DIR=$CACHE/apt
tarball=$CACHE/linux-source-$KVER.tar.xz
if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi

# Use the same Debian mirror the system is configured with.
mirror=$(debian_mirror)
[ -n "$mirror" ] || { log "no Debian mirror in the system apt sources"; exit 1; }
apt_private "$APT_DIR"

for suite in trixie-backports sid; do
	printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"$mirror" "$suite" >"$APT_DIR/sources.list"
	log "fetch-kernel: looking for linux-source-$KVER in $suite"
	apt-get "${APT_PRIVATE[@]}" update -q >/dev/null 2>&1 || continue
	if (cd "$APT_DIR/archives" &&
	    apt-get "${APT_PRIVATE[@]}" download -q "linux-source-$KVER" >/dev/null 2>&1); then
		break
	fi
done

deb=$(ls -t "$APT_DIR"/archives/linux-source-"$KVER"_*.deb 2>/dev/null | head -n1 || true)
[ -n "$deb" ] || { log "fetch-kernel: linux-source-$KVER not found"; exit 1; }
log "fetch-kernel: extracting $(basename "$deb")"
tmp=$(mktemp -d "$CACHE/deb.XXXXXX")
dpkg-deb -x "$deb" "$tmp"
mv "$tmp/usr/src/linux-source-$KVER.tar.xz" "$tarball"
rm -rf "$tmp"
echo "$tarball"
