#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make deb`: Debian packages of the custom kernel, release flavor, made by
# the kernel's own `make bindeb-pkg`: linux-image-<release> (the kernel with
# the syslet hooks, its modules), linux-headers-<release> (what `make -C
# /lib/modules/<release>/build M=...` needs, the Rust crates' metadata
# included: patch 0014) and linux-libc-dev. They are copied to
# $CACHE/deb/$KVER/ and listed.
#
# `make check-deb` (deb.sh --check) then tries them as the README tells a
# user to:
#  1. installs both packages with dpkg, maintainer scripts and all, into a
#     fresh Debian 12 root made by debootstrap (minbase; cached as a
#     tarball), chrooted: nothing is installed on this machine;
#  2. builds drivers/syslet with its Makefile against that root's
#     /lib/modules/<release>/build (the headers package), as on a real
#     machine: make KDIR=/lib/modules/$(uname -r)/build;
#  3. boots the kernel image the package installed (<root>/boot/vmlinuz-*)
#     under virtme-ng, inserts that module and runs the whole suite.
# The guest's root file system is this machine's, as for every other run
# here (virtme-ng shares it; the suite's tools, perf among them, come from
# it); what is checked is that the installed kernel and headers are enough.

set -euo pipefail
. "$(dirname "$0")/common.sh"

"$REPO/scripts/bootstrap.sh"
TREE=$("$REPO/scripts/kernel.sh" release)
release=$(cat "$TREE/include/config/kernel.release")
debs=$CACHE/deb/$KVER
mkdir -p "$debs"

log "deb: make bindeb-pkg ($release); log in $CACHE/deb-$KVER.log"
rm -f "$(dirname "$TREE")"/*.deb "$(dirname "$TREE")"/*.buildinfo "$(dirname "$TREE")"/*.changes
# -d: the kernel's debian/control names gcc-x86-64-linux-gnu as a build
# dependency (to rebuild the headers' host programs with the target's
# compiler); this build uses LLVM for both, which needs no GCC. Its rules do
# use debhelper (dh_listpackages), which bootstrap installs.
if ! make -C "$TREE" LLVM="$LLVM_SUFFIX" RUSTC="$RUSTC" -j"$(nproc)" \
	DPKG_FLAGS=-d bindeb-pkg >"$CACHE/deb-$KVER.log" 2>&1; then
	tail -n 30 "$CACHE/deb-$KVER.log" >&2
	log "deb: bindeb-pkg failed"
	exit 1
fi
rm -f "$debs"/*.deb
mv "$(dirname "$TREE")"/*.deb "$debs/"
rm -f "$(dirname "$TREE")"/*.buildinfo "$(dirname "$TREE")"/*.changes
ls -l "$debs"
[ "${1:-}" = --check ] || exit 0

image=$(ls "$debs"/linux-image-"$release"_*.deb | grep -v -- -dbg_ | head -n1)
headers=$(ls "$debs"/linux-headers-"$release"_*.deb | head -n1)
root=$CACHE/deb-root
rootball=$CACHE/deb-root-bookworm.tar
if [ ! -s "$rootball" ]; then
	log "deb: debootstrap --variant=minbase bookworm (once; cached)"
	rm -rf "$root"
	mirror=$(debian_mirror)
	debootstrap --variant=minbase bookworm "$root" "${mirror:-http://deb.debian.org/debian}" \
		>"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
	tar -C "$root" -cf "$rootball.tmp" . && mv "$rootball.tmp" "$rootball"
fi
rm -rf "$root" && mkdir -p "$root" && tar -C "$root" -xf "$rootball"

cp "$image" "$headers" "$root/tmp/"
step "deb: dpkg -i installs linux-image and linux-headers in a Debian 12 root" \
	chroot "$root" dpkg -i "/tmp/${image##*/}" "/tmp/${headers##*/}"
step "deb: /boot/vmlinuz-$release installed" test -s "$root/boot/vmlinuz-$release"
build=$(readlink "$root/lib/modules/$release/build")
step "deb: /lib/modules/$release/build points at the headers" test -f "$root$build/Makefile"
step "deb: the headers export the hooks to syslet" \
	grep -q 'syslet_sys_call' "$root$build/Module.symvers"

# Out of tree, against the installed headers, with the driver's own Makefile.
src=$(mktemp -d "$CACHE/deb-module.XXXXXX")
mkdir -p "$src/drivers/syslet" "$src/include/uapi/linux"
cp "$REPO/include/uapi/linux/syslet.h" "$src/include/uapi/linux/"
(cd "$REPO/drivers/syslet" && cp Makefile Kbuild ./*.c ./*.rs "$src/drivers/syslet/")
rm -f "$src/drivers/syslet/"*.mod.c "$src/drivers/syslet/uapi_generated.rs"
step "deb: make KDIR=/lib/modules/$release/build builds syslet.ko" \
	make -C "$src/drivers/syslet" KDIR="$root$build" RUSTC="$RUSTC" "${MAKE_QUIET[@]}"
step "deb: the module's vermagic is the installed kernel's" \
	bash -c "modinfo -F vermagic '$src/drivers/syslet/syslet.ko' | grep -q '^$release '"

log "deb: booting $root/boot/vmlinuz-$release with that module, the suite on it"
step "deb: the suite passes on the installed kernel" \
	env SYSLET_BOOT_IMAGE="$root/boot/vmlinuz-$release" \
	SYSLET_BOOT_MODULE="$src/drivers/syslet/syslet.ko" "$REPO/scripts/test.sh" release
rm -rf "$src"
[ $STEP_FAILED = 0 ]
