# SPDX-License-Identifier: GPL-2.0
#
# Building the module and user programs against the cached kernel, and
# booting that kernel under virtme-ng. Sourced by run.sh and test.sh.

# Builds the syslet module against $TREE.
build_module() {
	log "module: building drivers/syslet"
	make "${MAKE_QUIET[@]}" -C "$TREE" M="$REPO/drivers/syslet" LLVM="$LLVM_SUFFIX" RUSTC="$RUSTC" modules >&2
}

# Builds the kselftests (as the kernel's selftest build does) and samples.
build_user() {
	local ksft=$TREE/tools/testing/selftests/syslet
	OUT=$CACHE/out
	mkdir -p "$ksft" "$OUT/selftests" "$OUT/samples"
	rsync -a --delete "$REPO/tools/testing/selftests/syslet/" "$ksft/"
	log "user: building libsyslet, kselftests and samples"
	mkdir -p "$OUT/lib"
	make "${MAKE_QUIET[@]}" -C "$REPO/tools/lib/syslet" OUTPUT="$OUT/lib/" >&2
	make "${MAKE_QUIET[@]}" -C "$ksft" SYSLET_ROOT="$REPO" SYSLET_LIB="$OUT/lib" OUTPUT="$OUT/selftests" >&2
	build_rust_guest_test
	make "${MAKE_QUIET[@]}" -C "$REPO/samples/syslet" SYSLET_LIB="$OUT/lib" OUTPUT="$OUT/samples" >&2
	build_fio_engine
}

# Builds fio's syslet ioengine (tools/fio/) as $OUT/fio/syslet.so, against
# the headers of Debian's fio source package (scripts/fetch-fio-src.sh).
build_fio_engine() {
	local fio_src
	log "user: building fio's syslet ioengine"
	fio_src=$("$REPO/scripts/fetch-fio-src.sh")
	mkdir -p "$OUT/fio"
	make "${MAKE_QUIET[@]}" -C "$REPO/tools/fio" FIO_SRC="$fio_src" \
		SYSLET_LIB="$OUT/lib/libsyslet.a" OUTPUT="$OUT/fio/" >&2
}

# Builds the Rust crate's guest test (tests/guest.rs, TAP output) as one more
# program the guest runs, $OUT/selftests/rust_test. The crate's target
# directory is in the cache, outside the repository.
build_rust_guest_test() {
	local crate=$REPO/tools/lib/syslet/rust exe
	log "user: building the Rust crate's guest test"
	exe=$(cd "$crate" && CARGO_TARGET_DIR=$CACHE/cargo-target \
		cargo test --release --locked --test guest --no-run 2>&1 |
		sed -n 's/.*Executable tests\/guest.rs (\(.*\))/\1/p')
	[ -n "$exe" ] || { log "user: the Rust guest test did not build"; return 1; }
	case $exe in /*) ;; *) exe=$CACHE/cargo-target/${exe#target/} ;; esac
	cp "$exe" "$OUT/selftests/rust_test"
}

# Runs the Rust crate's host unit tests; prints a TAP line for the summary.
rust_host_tests() {
	if (cd "$REPO/tools/lib/syslet/rust" && CARGO_TARGET_DIR=$CACHE/cargo-target \
		cargo test --release --locked --lib -q) >&2; then
		echo "ok 201 host.rust_unit_tests"
	else
		echo "not ok 201 host.rust_unit_tests"
	fi
}

# Renders libsyslet's man pages, which must show no warning; a TAP line.
man_pages_check() {
	if make "${MAKE_QUIET[@]}" -C "$REPO/tools/lib/syslet" check-man >&2; then
		echo "ok 202 host.man_pages_render_cleanly"
	else
		echo "not ok 202 host.man_pages_render_cleanly"
	fi
}

# `make install` into a staging directory gives a usable kit: the module for
# the kernel's release, and a sample built from the installed header,
# library and pkg-config file alone; `man` finds the installed pages. A TAP
# line.
install_check() {
	local stage=$CACHE/out/install-check release
	release=$(cat "$TREE/include/config/kernel.release")
	rm -rf "$stage"
	if "$REPO/scripts/install.sh" test "$stage" /usr >&2 &&
		modinfo -F name "$stage/lib/modules/$release/updates/syslet.ko" >/dev/null &&
		cc -Wall -O2 -o "$stage/syslet_demo" "$REPO/samples/syslet/syslet_demo.c" \
			$(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_LIBDIR=$stage/usr/lib/pkgconfig \
				PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 \
				pkg-config --cflags --libs --static libsyslet) -static &&
		MANPATH=$stage/usr/share/man man -w syslet.7 syslet_queue_init >/dev/null; then
		echo "ok 204 host.make_install_stages_a_usable_kit"
	else
		echo "not ok 204 host.make_install_stages_a_usable_kit"
	fi
}

# Renders Documentation/ (docutils) and the man pages, warnings failing; a
# TAP line.
docs_check() {
	if "$REPO/scripts/docs.sh" >&2; then
		echo "ok 203 host.docs_render_cleanly"
	else
		echo "not ok 203 host.docs_render_cleanly"
	fi
}

# Decides, once per kernel build, whether KVM boots this kernel; sets VNG_ACCEL.
# This machine's /dev/kvm may be one on which guests hang early, so KVM is
# used only after a short probe boot under it has worked.
choose_accel() {
	local stamp=$TREE/.syslet-kvm
	if [ ! -f "$stamp" ] || [ "$stamp" -ot "$TREE/arch/x86/boot/bzImage" ]; then
		local verdict=tcg
		if [ -w /dev/kvm ]; then
			log "guest: probing KVM (20 s at most)"
			if timeout 20 vng --run "$TREE" --force-9p --memory 1G --exec 'echo syslet-kvm-ok' \
				</dev/null 2>/dev/null | grep -q syslet-kvm-ok; then
				verdict=kvm
			fi
		fi
		echo "$verdict" >"$stamp"
	fi
	if [ "$(cat "$stamp")" = kvm ]; then
		VNG_ACCEL=()
		log "guest: using KVM"
	else
		VNG_ACCEL=(--disable-kvm)
		log "guest: KVM does not boot this kernel here; using TCG"
	fi
}

# The machine vng 1.42 gives a guest (vng --dry-run --verbose prints it):
# under --disable-kvm, QEMU 7.2 TCG (multi-threaded, one host thread per
# vCPU) with -machine q35 -cpu max, an i6300esb watchdog (inert: no
# CONFIG_WATCHDOG), six virtio-serial-pci for the --exec streams, the root
# and each --rwdir over virtio-9p-pci, -no-reboot and panic=-1, so a panic
# or a triple fault ends QEMU at once. microvm is used only with KVM.
# --force-9p: vng first tries virtiofsd, but Debian 12's (QEMU's C one)
# rejects the options vng passes, so each export waits 3.1 s and falls back
# to 9p; forcing 9p gives the same command line without that wait and
# without a guest whose devices depend on a daemon's start-up race.
# Not changed, for lack of evidence that they cause the early deaths:
# -cpu max (all TCG features: la57, AVX2, FMA, VAES; a named model would
# change the kernel's code paths), -accel tcg,thread=single or -icount
# (they serialize the two vCPUs, so the handoff tests would no longer run
# truly in parallel; timer trouble from a loaded host prints soft-lockup or
# RCU-stall reports, not a silent death). SYSLET_QEMU_OPTS passes more QEMU
# options for such experiments.
#
# Runs a command line in the guest; its output goes to stdout. Further
# arguments go to vng (e.g. --rwdir DIR to let the guest write DIR).
run_guest() {
	local cmd=$1 extra=()
	shift
	[ -n "${SYSLET_QEMU_OPTS:-}" ] && extra=(--qemu-opts="$SYSLET_QEMU_OPTS")
	# SYSLET_BOOT_IMAGE: another kernel image (scripts/deb.sh: the one the
	# package installed) instead of $TREE's.
	timeout 1800 vng --run "${SYSLET_BOOT_IMAGE:-$TREE}" "${VNG_ACCEL[@]}" --force-9p --cpus 2 --memory 2G \
		--cwd "$REPO" "${extra[@]}" "$@" --exec "$cmd" </dev/null
}

# Everything before booting: dependencies, kernel (flavor $1: test, release,
# kasan or intree), module, user programs, and the choice of accelerator. Sets
# TREE, MODULE (the .ko, or "builtin"), OUT and VNG_ACCEL.
prepare_guest() {
	"$REPO/scripts/bootstrap.sh"
	TREE=$("$REPO/scripts/kernel.sh" "$1")
	# The in-tree flavor has the driver built in (scripts/intree.sh).
	if [ "$1" = intree ]; then
		MODULE=builtin
	elif [ -n "${SYSLET_BOOT_MODULE:-}" ]; then
		MODULE=$SYSLET_BOOT_MODULE	# scripts/deb.sh: built elsewhere
	else
		build_module
		MODULE=$REPO/drivers/syslet/syslet.ko
	fi
	build_user
	choose_accel
}
