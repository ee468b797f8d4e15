#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the syslet kernel: Debian's linux-source-$KVER with the
# project's overlay (rust/ files copied in, kernel/patches/ applied) and
# config (vng --kconfig + kernel/config/syslet.config), built with LLVM.
#
# Usage: kernel.sh [test|release|kasan|profile]. The test flavor (default) has
# lockdep and the other debugging options the kselftests run under; release
# adds kernel/config/release.config, which turns them off, for the demo and
# the benchmark; kasan adds kernel/config/kasan.config to the test flavor
# (opt-in, scripts/test-kasan.sh); profile adds kernel/config/profile.config
# (the function graph tracer) to release, for scripts/bench.sh --profile.
# Each flavor has its own tree, so switching between them never rebuilds
# another's.
#
# The tree lives in the cache, outside the repository, and is reused:
#  - same kernel + overlay + config (stamp matches): nothing is rebuilt;
#  - a changed overlay: only the files whose content changed are rewritten
#    (the others keep their mtime), so make rebuilds incrementally;
#  - a changed config: the config is regenerated, make does the rest.
# Prints the path of the kernel tree.

set -euo pipefail
. "$(dirname "$0")/common.sh"

FLAVOR=${1:-test}
tarball=$("$REPO/scripts/fetch-kernel.sh")
FRAGMENTS=("$REPO/kernel/config/syslet.config")
case $FLAVOR in
test)
	SRC=$CACHE/src ;;
release)
	SRC=$CACHE/src/release
	FRAGMENTS+=("$REPO/kernel/config/release.config") ;;
kasan)
	SRC=$CACHE/src/kasan
	FRAGMENTS+=("$REPO/kernel/config/kasan.config") ;;
profile)
	SRC=$CACHE/src/profile
	FRAGMENTS+=("$REPO/kernel/config/release.config" "$REPO/kernel/config/profile.config") ;;
intree)
	SRC=$CACHE/src/intree
	FRAGMENTS+=("$REPO/kernel/config/intree.config") ;;
*)
	log "kernel: unknown flavor '$FLAVOR' (test, release, kasan, profile or intree)"
	exit 2 ;;
esac
# SYSLET_EXTRA_CONFIG: more fragments, for experiments (they rebuild the
# flavor's tree; the next run without them rebuilds it again).
FRAGMENTS+=(${SYSLET_EXTRA_CONFIG:-})
TREE=$SRC/linux-source-$KVER
PRISTINE=$SRC/pristine-$KVER	# originals of every file the overlay touched
MAKE=(make -C "$TREE" LLVM="$LLVM_SUFFIX" RUSTC="$RUSTC" -j"$(nproc)")

# The patches for $KVER, in order: kernel/patches/NNNN-*.patch, each replaced
# by kernel/patches/$KVER/'s patch of the same name where the newer kernel
# needed one rebased (see "Kernel versions" in the README).
patches() {
	local p
	for p in "$REPO"/kernel/patches/*.patch; do
		if [ -f "$REPO/kernel/patches/$KVER/${p##*/}" ]; then
			echo "$REPO/kernel/patches/$KVER/${p##*/}"
		else
			echo "$p"
		fi
	done
	# The in-tree flavor also hooks drivers/syslet/ into drivers/.
	[ "$FLAVOR" != intree ] || ls "$REPO"/kernel/intree/*.patch
}

# The files the overlay copies into the tree as they are: the rust/ additions
# and, for the in-tree flavor, the driver's sources and its UAPI header.
copied_files() {
	(
		cd "$REPO"
		find rust -type f
		if [ "$FLAVOR" = intree ]; then
			echo include/uapi/linux/syslet.h
			find drivers/syslet -name Kbuild -o -name Kconfig -o -name '*.c' ! -name '*.mod.c' \
				-o -name '*.rs' ! -name uapi_generated.rs
		fi
	)
}

# Hash of everything that decides the built kernel. The 160 MB tarball is
# hashed once per run.
tarball_hash=$(sha256sum "$tarball" | cut -d' ' -f1)
overlay_hash() {
	(
		cd "$REPO"
		echo "$tarball_hash"
		{ copied_files; patches | sed "s|^$REPO/||"; } | LC_ALL=C sort | xargs sha256sum
	) | sha256sum | cut -d' ' -f1
}
config_hash() {
	(
		echo "$tarball_hash"
		cat "${FRAGMENTS[@]}" | sha256sum | cut -d' ' -f1
		vng --version
		"$RUSTC" --version
		clang-19 --version | head -n1
	) | sha256sum | cut -d' ' -f1
}

extract() {
	[ -f "$TREE/.syslet-extracted" ] && return
	# The in-tree flavor is the test flavor plus the driver: it starts as a
	# copy of the built test tree, so its first build is incremental.
	local test_tree=$CACHE/src/linux-source-$KVER
	if [ "$FLAVOR" = intree ] && [ -f "$test_tree/vmlinux" ]; then
		log "kernel: copying the test tree to start the in-tree flavor's"
		rm -rf "$TREE" "$PRISTINE"
		mkdir -p "$SRC"
		cp -a "$test_tree" "$TREE"
		cp -a "$CACHE/src/pristine-$KVER" "$PRISTINE"
		return
	fi
	log "kernel: extracting $(basename "$tarball")"
	rm -rf "$TREE" "$PRISTINE"
	mkdir -p "$SRC"
	tar -xf "$tarball" -C "$SRC"
	touch "$TREE/.syslet-extracted"
}

# Files the overlay writes: rust/ copies and every file a patch touches.
overlay_files() {
	copied_files
	patches | xargs cat | sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p'
}

apply_overlay() {
	local stage manifest=$TREE/.syslet-overlay-files f
	stage=$(mktemp -d "$CACHE/stage.XXXXXX")
	mkdir -p "$PRISTINE"
	# Every file touched now or by an earlier overlay starts from its original.
	{ overlay_files; cat "$manifest" 2>/dev/null || true; } | LC_ALL=C sort -u >"$stage.files"
	while read -r f; do
		if [ ! -e "$PRISTINE/$f" ] && [ ! -e "$PRISTINE/$f.absent" ]; then
			mkdir -p "$(dirname "$PRISTINE/$f")"
			if [ -f "$TREE/$f" ] && ! grep -qxF "$f" "$manifest" 2>/dev/null; then
				cp -p "$TREE/$f" "$PRISTINE/$f"
			else
				touch "$PRISTINE/$f.absent"
			fi
		fi
		if [ -f "$PRISTINE/$f" ]; then
			mkdir -p "$(dirname "$stage/$f")"
			cp -p "$PRISTINE/$f" "$stage/$f"
		fi
	done <"$stage.files"
	(cd "$REPO" && copied_files | xargs cp --parents -t "$stage/")
	for p in $(patches); do
		patch -s -p1 -d "$stage" --no-backup-if-mismatch <"$p" ||
			{ log "kernel: $(basename "$p") does not apply"; exit 1; }
	done
	# Rewrite only what changed, so make sees only real changes.
	while read -r f; do
		if [ -f "$stage/$f" ]; then
			if ! cmp -s "$stage/$f" "$TREE/$f"; then
				mkdir -p "$(dirname "$TREE/$f")"
				cp "$stage/$f" "$TREE/$f"
				log "kernel: overlay: $f"
			fi
		elif [ -e "$TREE/$f" ]; then
			rm -f "$TREE/$f"
			log "kernel: overlay: removed $f"
		fi
	done <"$stage.files"
	overlay_files | LC_ALL=C sort -u >"$manifest"
	rm -rf "$stage" "$stage.files"
}

configure() {
	log "kernel: configuring (vng --kconfig + ${FRAGMENTS[*]##*/})"
	(cd "$TREE" && LLVM="$LLVM_SUFFIX" vng --kconfig >/dev/null 2>&1)
	(cd "$TREE" && LLVM="$LLVM_SUFFIX" scripts/kconfig/merge_config.sh -m .config \
		"${FRAGMENTS[@]}" >/dev/null)
	"${MAKE[@]}" olddefconfig >/dev/null
	# Every option the fragments ask for (the last word on each) must have stuck.
	local -A want=()
	local bad=0 line opt
	while read -r line; do
		case "$line" in
		CONFIG_*=*)
			want[${line%%=*}]=$line ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			want[${opt%% *}]=unset ;;
		esac
	done < <(cat "${FRAGMENTS[@]}")
	for opt in "${!want[@]}"; do
		if [ "${want[$opt]}" = unset ]; then
			! grep -q "^$opt=[ym]" "$TREE/.config" || { log "kernel: config: $opt still set"; bad=1; }
		else
			grep -qxF "${want[$opt]}" "$TREE/.config" || { log "kernel: config: ${want[$opt]} did not stick"; bad=1; }
		fi
	done
	[ $bad = 0 ] || exit 1
}

# "12 min 5 s" for a number of seconds.
elapsed() {
	if [ "$1" -ge 60 ]; then
		echo "$(($1 / 60)) min $(($1 % 60)) s"
	else
		echo "$1 s"
	fi
}

# Runs make with its output in $BUILD_LOG, and tells the person waiting how
# far it is. Progress is counted in build steps (kbuild's "  CC  file"
# lines). A cold build's total is what the last cold build of this version
# and flavor took ($CACHE/kernel-steps-*, or COLD_STEPS before there is
# one), so it shows a percentage and the time left at the rate so far; an
# incremental build shows the steps done. On a terminal the line is
# rewritten every 2 s; in a log, a line a minute. V=1 shows make's output
# instead.
COLD_STEPS=2800	# cold test-flavor builds: 2797 steps for 7.2, 2698 for 7.3
build_with_progress() {
	if [ "${SYSLET_V:-0}" = 1 ]; then
		# On standard error: standard output carries the tree's path.
		"${MAKE[@]}" V=1 2>&1 | tee "$BUILD_LOG" >&2
		return "${PIPESTATUS[0]}"
	fi
	local steps_file=$CACHE/kernel-steps-$KVER-$FLAVOR total=0 pid rc=0 n t
	local cold=0 tty=0 every=60 last=0
	[ -f "$TREE/vmlinux" ] || cold=1
	[ $cold = 1 ] && total=$(cat "$steps_file" 2>/dev/null || echo $COLD_STEPS)
	[ -t 2 ] && { tty=1; every=2; }
	"${MAKE[@]}" >"$BUILD_LOG" 2>&1 &
	pid=$!
	while kill -0 $pid 2>/dev/null; do
		sleep 2
		t=$(($(date +%s) - start))
		[ $((t - last)) -ge $every ] || continue
		last=$t
		n=$(grep -c '^  [A-Z]' "$BUILD_LOG" || true)
		if [ $cold = 1 ] && [ "$n" -gt 0 ]; then
			local pct=$((n * 100 / total)) left=$(((total - n) * t / n))
			[ $pct -gt 99 ] && { pct=99; left=0; }
			msg="kernel: $n/$total steps ($pct%), $(elapsed $t), about $(elapsed $left) left"
		else
			msg="kernel: $n steps, $(elapsed $t)"
		fi
		if [ $tty = 1 ]; then
			printf '\r%s\033[K' "$msg" >&2
		else
			log "$msg"
		fi
	done
	wait $pid || rc=$?
	[ $tty = 1 ] && printf '\r\033[K' >&2
	if [ $rc = 0 ] && [ $cold = 1 ]; then
		grep -c '^  [A-Z]' "$BUILD_LOG" >"$steps_file" || true
	fi
	return $rc
}

extract
ohash=$(overlay_hash)
chash=$(config_hash)
if [ "$(cat "$TREE/.syslet-stamp" 2>/dev/null)" = "$ohash $chash" ] &&
   [ -f "$TREE/arch/x86/boot/bzImage" ] && [ -f "$TREE/Module.symvers" ]; then
	log "kernel: cached build is current ($TREE)"
	echo "$TREE"
	exit 0
fi

apply_overlay
if [ "$(cat "$TREE/.syslet-config-stamp" 2>/dev/null)" != "$chash" ] || [ ! -f "$TREE/.config" ]; then
	configure
	echo "$chash" >"$TREE/.syslet-config-stamp"
fi
BUILD_LOG=$CACHE/kernel-build-$KVER-$FLAVOR.log
log "kernel: building $KVER, $FLAVOR flavor ($(nproc) jobs); log in $BUILD_LOG"
start=$(date +%s)
if ! build_with_progress; then
	grep -E 'error|Error' "$BUILD_LOG" | head -40 >&2
	log "kernel: build failed, see $BUILD_LOG"
	exit 1
fi
log "kernel: built in $(elapsed $(($(date +%s) - start)))"
echo "$ohash $chash" >"$TREE/.syslet-stamp"
echo "$TREE"
