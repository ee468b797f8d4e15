#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make docs`: render the reference documentation, warnings failing it:
# Documentation/**/*.rst with docutils (rst2html --halt=warning; the pages
# use plain reStructuredText, no Sphinx-only roles) into $CACHE/out/docs, and
# libsyslet's man pages with man --warnings (tools/lib/syslet: check-man).
# The test command runs the same checks (host.docs_render_cleanly,
# host.man_pages_render_cleanly).

set -euo pipefail
. "$(dirname "$0")/common.sh"

out=$CACHE/out/docs
mkdir -p "$out"
status=0
while read -r page; do
	html=$out/$(basename "$page" .rst).html
	if ! rst2html --halt=warning --report=warning "$page" "$html"; then
		log "docs: $page does not render cleanly"
		status=1
	else
		log "docs: $page -> $html"
	fi
done < <(find "$REPO/Documentation" -name '*.rst' | LC_ALL=C sort)
if make -s -C "$REPO/tools/lib/syslet" check-man; then
	log "docs: man pages render without warnings (tools/lib/syslet/man)"
else
	status=1
fi
exit $status
