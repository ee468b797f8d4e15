#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make shell`: boot the kernel (flavor $1, default test) under virtme-ng
# with the module loaded, and give a person a shell in the guest. The
# repository is the guest's working directory; the host's file system is
# the guest's root, read-only except /tmp. The samples, kselftests and
# libsyslet are in $CACHE/out (printed at the prompt). Leave with `exit`.

set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$REPO/scripts/guest.sh"

prepare_guest "${1:-test}"
rc=$CACHE/shell-rc
cat >"$rc" <<RC
[ '$MODULE' = builtin ] || insmod '$MODULE' && echo "syslet: /dev/syslet ready"
echo "samples: $OUT/samples   kselftests: $OUT/selftests"
PS1='syslet-guest# '
RC
shell=$CACHE/shell-init
printf '#!/bin/bash\nexec /bin/bash --rcfile %q -i\n' "$rc" >"$shell"
chmod +x "$shell"
exec vng --run "$TREE" "${VNG_ACCEL[@]}" --force-9p --cpus 2 --memory 2G \
	--cwd "$REPO" --user root --shell "$shell"
