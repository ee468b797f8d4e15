// SPDX-License-Identifier: GPL-2.0
/*
 * syslet trace events seen by perf: a workload runs one exec of three atoms
 * (a getppid that runs inline, an execve that policy refuses, a read from an
 * empty pipe that blocks and hands the program to a parked spare) under
 * "perf trace" and under "perf record", and each atom's events must be
 * there with its user_data, number, result and flags: submit and complete
 * for all three, start for the two that ran, block and handoff for the read;
 * then, on the pollable path, arm and start of a receive on an empty socket.
 * Both record system-wide (-a): syslet_block fires from the scheduler (the
 * sleep hook before the switch or, for a block with no spare, sched_out,
 * after perf has switched the blocking task's own events off), so a
 * per-task session could miss it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

#define TRACEFS		"/sys/kernel/tracing"
#define EVENTS		TRACEFS "/events/syslet"
#define COOKIE		0xc0ffeeULL

/* The atoms' user_data: the tests look for them in the events. */
enum {
	ID_GETPPID = 0x5157a001,
	ID_EXECVE = 0x5157a002,
	ID_READ = 0x5157a003,
	ID_RECV = 0x5157a004,
};

/* The spare of the workload: parks until it takes the program over. */
struct workload_spare {
	struct syslet_ring *ring;
	uint64_t cookie;
	int ret;
	pthread_t thread;
};

static void *workload_spare_main(void *arg)
{
	struct workload_spare *s = arg;

	s->ret = syslet_park(s->ring, &s->cookie);
	return NULL;
}

/*
 * The pollable path: a receive on an empty socket is armed, and runs in the
 * wait once data arrives. 0, or the step that went wrong.
 */
static int polled_workload(void)
{
	struct syslet_ring ring;
	struct syslet_sqe *sqe;
	struct syslet_cqe *cqe;
	int sv[2];
	char c;

	if (syslet_queue_init_flags(&ring, 4, 8, SYSLET_SETUP_POLL) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 20;
	sqe = syslet_get_sqe(&ring);
	syslet_prep_recv(sqe, sv[0], &c, 1, 0);
	sqe->user_data = ID_RECV;
	if (syslet_submit_n(&ring, 1) != 1 || syslet_peek_cqe(&ring))
		return 21;
	if (write(sv[1], "p", 1) != 1 || syslet_wait(&ring, 1, 20000000000LL) != 1)
		return 22;
	cqe = syslet_peek_cqe(&ring);
	if (!cqe || cqe->res != 1 || cqe->flags != (SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE))
		return 23;
	syslet_queue_exit(&ring);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

/*
 * The traced program: 0 if every atom ended as the tests expect, else the
 * step that went wrong.
 */
static int workload(void)
{
	struct workload_spare spare = { 0 };
	struct late_write late;
	struct syslet_ring ring;
	struct syslet_sqe *sqe;
	char *argv[] = { "/bin/true", NULL };
	char c;
	int p[2], handed = 0, ret;

	if (syslet_queue_init(&ring, 4, 0) || pipe(p))
		return 2;
	spare.ring = &ring;
	if (pthread_create(&spare.thread, NULL, workload_spare_main, &spare))
		return 3;
	if (wait_counter(ring.fd, "spares_parked", 1))
		return 4;

	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->user_data = ID_GETPPID;
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_execve, (uintptr_t)argv[0], (uintptr_t)argv, 0, 0, 0, 0);
	sqe->user_data = ID_EXECVE;
	sqe = syslet_get_sqe(&ring);
	syslet_prep_read(sqe, p[0], &c, 1);
	sqe->user_data = ID_READ;
	if (start_late_write(&late, p[1], 200, "x"))
		return 5;
	ret = syslet_submit_cont(&ring, 3, COOKIE, &handed);
	pthread_join(late.thread, NULL);
	pthread_join(spare.thread, NULL);
	if (ret != 3)
		return 6;
	if (!handed || spare.ret || spare.cookie != COOKIE)
		return 7;
	syslet_queue_exit(&ring);
	return polled_workload();
}

/* Makes the syslet events reachable: tracefs mounted, module loaded. */
static int events_ready(void)
{
	if (access(TRACEFS "/events", F_OK) &&
	    mount("nodev", TRACEFS, "tracefs", 0, NULL))
		return -errno;
	return access(EVENTS "/syslet_submit", F_OK) ? -ENOENT : 0;
}

/* Runs @cmd with a shell; its standard output, or NULL. Caller frees. */
static char *run_output(const char *cmd, int *status)
{
	size_t len = 0, cap = 1 << 16;
	char *out = malloc(cap);
	FILE *f;

	if (!out)
		return NULL;
	f = popen(cmd, "r");
	if (!f) {
		free(out);
		return NULL;
	}
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			char *bigger = realloc(out, cap * 2);

			if (!bigger)
				break;
			out = bigger;
			cap *= 2;
		}
		n = fread(out + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	out[len] = '\0';
	*status = pclose(f);
	return out;
}

/*
 * How a tool prints an event's fields: "perf script" (and tracefs) with the
 * event's own format, "user_data 0x5157a001 nr 110 ..."; "perf trace" with
 * its own, "user_data: 1364697089, nr: 110, ...", decimal, and fields whose
 * value is zero left out.
 */
enum event_format { TP_PRINTK, PERF_TRACE };

/*
 * Writes field @name with @value as @fmt prints it (TP_PRINTK: user_data,
 * flags and events in hex, the rest in decimal, as include/trace/events/syslet.h says).
 */
static void field(char *buf, size_t len, enum event_format fmt, const char *name, long value)
{
	if (fmt == PERF_TRACE)
		snprintf(buf, len, "%s: %ld", name, value);
	else if (!strcmp(name, "user_data") || !strcmp(name, "flags") || !strcmp(name, "events"))
		snprintf(buf, len, "%s 0x%lx ", name, value);
	else
		snprintf(buf, len, "%s %ld ", name, value);
}

/*
 * Whether a line of @out names @event for the atom @id and holds field
 * @name with @value (@name NULL: any event of the atom).
 */
static int has_event(const char *out, enum event_format fmt, const char *event, unsigned int id,
		     const char *name, long value)
{
	char ev[64], data[64], want[64] = "";
	const char *line = out;

	snprintf(ev, sizeof(ev), "syslet:%s", event);
	field(data, sizeof(data), fmt, "user_data", id);
	if (name)
		field(want, sizeof(want), fmt, name, value);
	while (line && *line) {
		const char *end = strchrnul(line, '\n');
		char buf[1024], *hit;
		size_t n = end - line < (long)sizeof(buf) - 1 ? end - line : sizeof(buf) - 1;

		memcpy(buf, line, n);
		buf[n] = ' ';
		buf[n + 1 < sizeof(buf) ? n + 1 : n] = '\0';
		if (strstr(buf, ev) && strstr(buf, data) && (hit = strstr(buf, want))) {
			/* "perf trace": the value ends at a comma or the closing parenthesis. */
			char next = hit[strlen(want)];

			if (!name || fmt == TP_PRINTK || next == ',' || next == ')')
				return 1;
		}
		line = *end ? end + 1 : NULL;
	}
	return 0;
}

/* Checks the events of the workload's three atoms in perf's output @out. */
static void check_events(struct __test_metadata *_metadata, const char *out, enum event_format fmt)
{
	/* getppid: submitted, started (watched: a block would hand off), inline. */
	EXPECT_TRUE(has_event(out, fmt, "syslet_submit", ID_GETPPID, "nr", __NR_getppid));
	EXPECT_TRUE(has_event(out, fmt, "syslet_start", ID_GETPPID, "watched", 1));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_GETPPID, "flags", SYSLET_CQE_F_INLINE));
	/* execve: submitted with its arguments, refused (-EINVAL), never started. */
	EXPECT_TRUE(has_event(out, fmt, "syslet_submit", ID_EXECVE, "nr", __NR_execve));
	EXPECT_FALSE(has_event(out, fmt, "syslet_start", ID_EXECVE, NULL, 0));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_EXECVE, "res", -EINVAL));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_EXECVE, "flags", SYSLET_CQE_F_REFUSED));
	/* read: blocked with a spare lent, handed off, completed asynchronously with 1 byte. */
	EXPECT_TRUE(has_event(out, fmt, "syslet_submit", ID_READ, NULL, 0));
	EXPECT_TRUE(has_event(out, fmt, "syslet_block", ID_READ, "spare", 1));
	EXPECT_TRUE(has_event(out, fmt, "syslet_handoff", ID_READ, NULL, 0));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_READ, "res", 1));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_READ, "flags", SYSLET_CQE_F_ASYNC));
	/* Nothing else blocked: the getppid atom has no block event. */
	EXPECT_FALSE(has_event(out, fmt, "syslet_block", ID_GETPPID, NULL, 0));
	/* recv on the pollable path: armed for POLLIN (1), then run, flagged POLLED. */
	EXPECT_TRUE(has_event(out, fmt, "syslet_arm", ID_RECV, "events", 1));
	EXPECT_TRUE(has_event(out, fmt, "syslet_start", ID_RECV, NULL, 0));
	EXPECT_TRUE(has_event(out, fmt, "syslet_complete", ID_RECV, "flags",
			      SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE));
	EXPECT_FALSE(has_event(out, fmt, "syslet_arm", ID_READ, NULL, 0));
	if (_metadata->exit_code)
		TH_LOG("perf printed:\n%s", out);
}

/* The path of this program, for perf to run it as the workload. */
static const char *self_path(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	if (n <= 0)
		return NULL;
	path[n] = '\0';
	return path;
}

FIXTURE(perf) {
	char data[64];		/* perf record's data file */
	const char *self;
};

FIXTURE_SETUP(perf)
{
	int status;
	char *v;

	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	v = run_output("perf version 2>/dev/null", &status);
	if (!v || status)
		SKIP(free(v); return, "no perf");
	free(v);
	ASSERT_EQ(0, events_ready()) TH_LOG("no syslet events in " EVENTS);
	self->self = self_path();
	ASSERT_NE(NULL, self->self);
	snprintf(self->data, sizeof(self->data), "/tmp/syslet-perf.%d.data", getpid());
}

FIXTURE_TEARDOWN(perf)
{
	unlink(self->data);
}

/*
 * The workload alone does what the tests expect of it, untraced. Each test
 * has more than the default 30 s: perf, and a KASAN guest, start slowly
 * when emulated on a busy machine.
 */
TEST_F_TIMEOUT(perf, workload_runs_untraced, 180)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(workload());
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* "perf trace" shows every atom of the exec, with no syscall tracing needed. */
TEST_F_TIMEOUT(perf, perf_trace_shows_atoms, 180)
{
	char cmd[PATH_MAX + 128];
	int status;
	char *out;

	snprintf(cmd, sizeof(cmd),
		 "perf trace -a --no-syscalls -e 'syslet:*' -- %s --workload 2>&1", self->self);
	out = run_output(cmd, &status);
	ASSERT_NE(NULL, out);
	EXPECT_EQ(0, status) TH_LOG("perf trace (or the workload) failed:\n%s", out);
	check_events(_metadata, out, PERF_TRACE);
	free(out);
}

/* "perf record" then "perf script": the same events, kept in a file. */
TEST_F_TIMEOUT(perf, perf_record_shows_atoms, 180)
{
	char cmd[PATH_MAX + 128];
	int status;
	char *out;

	snprintf(cmd, sizeof(cmd), "perf record -a -q -B -N -e 'syslet:*' -o %s -- %s --workload 2>&1",
		 self->data, self->self);
	out = run_output(cmd, &status);
	ASSERT_NE(NULL, out);
	ASSERT_EQ(0, status) TH_LOG("perf record (or the workload) failed:\n%s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "perf script -i %s 2>&1", self->data);
	out = run_output(cmd, &status);
	ASSERT_NE(NULL, out);
	EXPECT_EQ(0, status);
	check_events(_metadata, out, TP_PRINTK);
	free(out);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--workload"))
		return workload();
	return test_harness_run(argc, argv);
}
