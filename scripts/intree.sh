#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make intree`: drivers/syslet built the way every driver is, inside the
# kernel tree, as =y and as =m, and the =y kernel booted with the suite.
#
# The in-tree flavor of scripts/kernel.sh is the test flavor (its tree starts
# as a copy of the built test tree, so the first build is incremental) plus
# drivers/syslet/ and include/uapi/linux/syslet.h copied into the tree,
# kernel/intree/*.patch (drivers/Kconfig sources drivers/syslet/Kconfig,
# drivers/Makefile descends into it) and CONFIG_SYSLET=y. This script then
#  1. checks the =y build: modules.builtin lists the driver, its objects are
#     in vmlinux, `make headers` exports <linux/syslet.h>, and the driver's
#     Rust is formatted as `make rustfmtcheck` wants;
#  2. builds the same tree with CONFIG_SYSLET=m and checks the kernel's own
#     make produced drivers/syslet/syslet.ko (modinfo), then goes back to =y;
#  3. boots the =y kernel and runs the whole suite on it (scripts/test.sh
#     intree: no insmod, the device is there from boot).

set -euo pipefail
. "$(dirname "$0")/common.sh"

"$REPO/scripts/bootstrap.sh"
# The in-tree flavor's tree is copied from the test flavor's, which must be
# built first.
"$REPO/scripts/kernel.sh" test >/dev/null
TREE=$("$REPO/scripts/kernel.sh" intree)
KMAKE=(make -C "$TREE" LLVM="$LLVM_SUFFIX" RUSTC="$RUSTC" -j"$(nproc)" "${MAKE_QUIET[@]}")

log "intree: =y checks"
step "intree: CONFIG_SYSLET=y" grep -qx 'CONFIG_SYSLET=y' "$TREE/.config"
step "intree: modules.builtin lists drivers/syslet/syslet.ko" \
	grep -qx 'kernel/drivers/syslet/syslet.ko' "$TREE/modules.builtin"
step "intree: drivers/syslet/built-in.a, linked into vmlinux, holds the driver" \
	bash -c "ar t '$TREE/drivers/syslet/built-in.a' | grep -q syslet_main.o"
"${KMAKE[@]}" headers >/dev/null 2>&1 || true
# headers_install only drops the _UAPI prefix of the include guard.
step "intree: make headers exports linux/syslet.h" \
	bash -c "sed 's/_UAPI_LINUX_SYSLET_H/_LINUX_SYSLET_H/' '$REPO/include/uapi/linux/syslet.h' |
		cmp -s - '$TREE/usr/include/linux/syslet.h'"
# rustfmt comes with rustup's default profile; without it this fails.
step "intree: drivers/syslet is rustfmt-clean (the kernel's .rustfmt.toml)" \
	bash -c "cd '$TREE' && rustfmt --check --edition 2021 --config-path .rustfmt.toml \
		\$(ls drivers/syslet/*.rs | grep -v uapi_generated) >/dev/null"

log "intree: the same tree with CONFIG_SYSLET=m"
cp "$TREE/.config" "$TREE/.config.syslet-y"
"$TREE/scripts/config" --file "$TREE/.config" --module SYSLET
"${KMAKE[@]}" olddefconfig >/dev/null
step "intree: CONFIG_SYSLET=m" grep -qx 'CONFIG_SYSLET=m' "$TREE/.config"
rm -f "$TREE/drivers/syslet/syslet.ko"
if "${KMAKE[@]}" >"$CACHE/kernel-build-$KVER-intree-m.log" 2>&1; then
	step "intree: the kernel's make built drivers/syslet/syslet.ko" \
		test "$(modinfo -F name "$TREE/drivers/syslet/syslet.ko" 2>/dev/null)" = syslet
	step "intree: modules.order lists it" \
		grep -qx 'drivers/syslet/syslet.o' "$TREE/modules.order"
else
	tail -n 20 "$CACHE/kernel-build-$KVER-intree-m.log" >&2
	step "intree: =m build" false
fi
log "intree: back to CONFIG_SYSLET=y"
cp "$TREE/.config.syslet-y" "$TREE/.config"
"${KMAKE[@]}" olddefconfig >/dev/null
if ! "${KMAKE[@]}" >"$CACHE/kernel-build-$KVER-intree-y.log" 2>&1; then
	tail -n 20 "$CACHE/kernel-build-$KVER-intree-y.log" >&2
	step "intree: =y rebuild" false
fi

log "intree: booting the =y kernel, the suite on it"
step "intree: the suite passes with the driver built in" "$REPO/scripts/test.sh" intree
[ $STEP_FAILED = 0 ]
