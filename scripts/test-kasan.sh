#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The test command on the opt-in KASAN kernel (scripts/kernel.sh kasan: the
# test flavor plus kernel/config/kasan.config, in its own cached tree, so it
# never forces a rebuild of the default test kernel). The same suite, dmesg
# scan and summary line as scripts/test.sh.

set -euo pipefail
exec "$(dirname "$0")/test.sh" kasan
