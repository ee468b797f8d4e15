#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The long fuzzer run (not part of the test command): fuzz_test with
# 1000000 operations (or $1) on the test kernel, then the same rmmod and
# dmesg scan as the tests, and the summary line. SYSLET_FUZZ_SEED picks
# the seed (default 2007).

set -euo pipefail
export SYSLET_SUITES=fuzz_test
export SYSLET_FUZZ_OPS=${1:-1000000}
exec "$(dirname "$0")/test.sh" test
