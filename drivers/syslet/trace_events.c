// SPDX-License-Identifier: GPL-2.0
/*
 * The syslet trace events (include/trace/events/syslet.h) are defined here,
 * with the rust_do_trace_*() functions that trace.rs calls.
 */

#define CREATE_TRACE_POINTS
#define CREATE_RUST_TRACE_POINTS
#include <trace/events/syslet.h>
