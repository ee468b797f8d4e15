# SPDX-License-Identifier: GPL-2.0
#
# syslet: asynchronous system calls for Linux. The build story in one place;
# `make help` lists the targets. Every target works on a fresh Debian 12
# machine as root: the scripts it calls install what is missing
# (scripts/bootstrap.sh) and build or reuse the cached kernel, which lives
# outside the repository ($(SYSLET_CACHE), default ~/.cache/syslet), keyed by
# kernel version, overlay and config.
#
# Variables:
#   KVER=7.3      the kernel version (Debian's linux-source-$(KVER)); 7.2 if
#                 unset, the one CI builds
#   FLAVOR=...    the kernel flavor for `make`, `make kernel`, `make shell`
#                 and `make install`: test (default), release, kasan, profile
#   V=1           show every command, as kbuild does
#   DESTDIR=, PREFIX=/usr/local   where `make install` puts things

KVER ?=
FLAVOR ?= test
V ?= 0
PREFIX ?= /usr/local
DESTDIR ?=

ifneq ($(KVER),)
export SYSLET_KVER := $(KVER)
endif
export SYSLET_V := $(V)
ifneq ($(V),1)
MAKEFLAGS += --no-print-directory
endif

all:
	@scripts/build.sh $(FLAVOR)

kernel:
	@scripts/bootstrap.sh
	@scripts/kernel.sh $(FLAVOR) >/dev/null

check:
	@scripts/test.sh

check-kasan:
	@scripts/test-kasan.sh

check-versions:
	@scripts/test-versions.sh

run:
	@scripts/run.sh

bench:
	@scripts/bench.sh $(REPS)

bench-net:
	@scripts/bench-net.sh

fuzz:
	@scripts/fuzz.sh $(OPS)

shell:
	@scripts/shell.sh $(FLAVOR)

intree:
	@scripts/intree.sh

deb:
	@scripts/deb.sh

check-deb:
	@scripts/deb.sh --check

docs:
	@scripts/bootstrap.sh
	@scripts/docs.sh

install:
	@scripts/install.sh $(FLAVOR) "$(DESTDIR)" "$(PREFIX)"

clean:
	@scripts/clean.sh

help:
	@echo 'syslet: asynchronous system calls for Linux'
	@echo
	@echo 'The README'"'"'s two commands:'
	@echo '  make run        main job: bootstrap, kernel, module, boot, demo,'
	@echo '                  benchmark excerpt and samples (release kernel)'
	@echo '  make check      the tests: kselftests under virtme-ng, dmesg scan,'
	@echo '                  host tests; ends "N passed, N failed" (.ci/run)'
	@echo
	@echo 'Building:'
	@echo '  make            module and user programs against the cached kernel'
	@echo '                  (built first if missing)'
	@echo '  make kernel     build or reuse the cached kernel (FLAVOR=test|release|'
	@echo '                  kasan|profile), with progress and elapsed time'
	@echo '  make install    module, UAPI header, libsyslet, pkg-config file and'
	@echo '                  man pages into $$(DESTDIR)$$(PREFIX) (module under'
	@echo '                  $$(DESTDIR)/lib/modules/<release>/updates)'
	@echo '  make clean      the module'"'"'s and user programs'"'"' build output (not'
	@echo '                  the cached kernels)'
	@echo
	@echo 'Long runs:'
	@echo '  make check-kasan     the suite on a KASAN kernel'
	@echo '  make check-versions  the suite on every supported kernel version'
	@echo '  make bench           B1-B5 against plain calls, io_uring, AIO,'
	@echo '                       threads and fio (REPS=5)'
	@echo '  make bench-net       the network sample at 100 to 10,000 connections'
	@echo '  make fuzz            the fuzzer for 1,000,000 operations (OPS=n)'
	@echo
	@echo 'Kernel shape:'
	@echo '  make intree     build drivers/syslet inside the kernel tree, as =m'
	@echo '                  and as =y, and boot the =y kernel'
	@echo '  make deb        Debian packages of the release kernel (bindeb-pkg)'
	@echo '  make check-deb  install the packages into a Debian 12 chroot, build the'
	@echo '                  module against their headers, boot the installed'
	@echo '                  kernel, run the suite'
	@echo '  make docs       render Documentation/ and the man pages, warnings fail'
	@echo
	@echo 'For humans:'
	@echo '  make shell      boot the guest with the module loaded and a shell'
	@echo
	@echo 'Variables: KVER=7.3 (kernel version, default 7.2), FLAVOR=release,'
	@echo '  V=1 (show commands), DESTDIR=, PREFIX=/usr/local'

.PHONY: all kernel check check-kasan check-versions run bench bench-net fuzz \
	shell intree deb check-deb docs install clean help
