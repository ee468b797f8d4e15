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
*)
	log "kernel: unknown flavor '$FLAVOR' (test, release, kasan or profile)"
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
}

# Hash of everything that decides the built kernel. The 160 MB tarball is
# hashed once per run.
tarball_hash=$(sha256sum "$tarball" | cut -d' ' -f1)
overlay_hash() {
	(
		cd "$REPO"
		echo "$tarball_hash"
		{ find rust -type f; patches | sed "s|^$REPO/||"; } | LC_ALL=C sort | xargs sha256sum
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
	log "kernel: extracting $(basename "$tarball")"
	rm -rf "$TREE" "$PRISTINE"
	mkdir -p "$SRC"
	tar -xf "$tarball" -C "$SRC"
	touch "$TREE/.syslet-extracted"
}

# Files the overlay writes: rust/ copies and every file a patch touches.
overlay_files() {
	(cd "$REPO" && find rust -type f)
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
	(cd "$REPO" && find rust -type f -exec cp --parents {} "$stage/" \;)
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
log "kernel: building the $FLAVOR flavor ($(nproc) jobs); log in $CACHE/kernel-build-$FLAVOR.log"
start=$(date +%s)
if ! "${MAKE[@]}" >"$CACHE/kernel-build-$FLAVOR.log" 2>&1; then
	grep -E 'error|Error' "$CACHE/kernel-build-$FLAVOR.log" | head -40 >&2
	log "kernel: build failed, see $CACHE/kernel-build-$FLAVOR.log"
	exit 1
fi
log "kernel: built in $(($(date +%s) - start)) s"
echo "$ohash $chash" >"$TREE/.syslet-stamp"
echo "$TREE"
