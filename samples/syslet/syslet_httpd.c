// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_httpd: a static-file HTTP/1.1 server (keep-alive, GET of one file)
 * written three ways, and the load generator that measures them side by
 * side in one run over loopback:
 *
 *   syslet  one event loop on a context set up with SYSLET_SETUP_POLL:
 *           accept and receive atoms wait on the pollable path (a small
 *           record on the socket's wait queue, no thread), the file's pread
 *           goes through syslet_submit_async() (the handoff path: inline
 *           when cached, on a spare when it blocks), the response is sent
 *           inline. Threads: the loop and a bounded spare pool.
 *   epoll   the classic design: one epoll loop for the sockets, a pool of
 *           worker threads for the file reads (they block; epoll cannot
 *           wait for a file), results passed back through an eventfd.
 *   uring   io_uring: accept, recv, read and send operations, completions
 *           reaped in one loop.
 *
 * The generator opens C connections, sends R requests on each one after the
 * other (a new request when the previous response is complete), checks
 * every response body, and prints requests per second, p50 and p99 latency
 * and the most threads the server had alive at once (sampled from
 * /proc/PID/status while it runs).
 *
 * Usage: syslet_httpd [-m syslet|epoll|uring] [-c CONNS] [-r REQS] [-q]
 * -q: print one summary line only. Exit status: 0 when every response was
 * correct (and, for the syslet server, it never had more threads than its
 * loop and its spare pool), 2 for a bad response, 3 for too many threads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libsyslet.h"

#define BODY_SIZE	4096
#define REQ_MAX		1024
#define MAX_CONNS	20000
#define ACCEPTS		16		/* accepts waiting at once */
#define POOL_THREADS	4		/* epoll server's file readers */
#define SYSLET_SPARES_MAX 4		/* syslet server's spare pool */

static const char request[] = "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
static char body[BODY_SIZE];		/* what the file holds */
static int file_fd;			/* the served file */

/* One connection of a server: its socket, request and response buffers. */
struct conn {
	int fd;
	unsigned int req_len;
	char req[REQ_MAX];
	char resp[128 + BODY_SIZE];
	unsigned int hdr_len;
};

static struct conn *conns[MAX_CONNS * 2];

static struct conn *conn_new(int fd)
{
	struct conn *c;

	if (fd < 0 || fd >= MAX_CONNS * 2)
		return NULL;
	c = conns[fd];
	if (!c) {
		c = malloc(sizeof(*c));
		if (!c)
			return NULL;
		conns[fd] = c;
	}
	c->fd = fd;
	c->req_len = 0;
	c->hdr_len = snprintf(c->resp, 128,
			      "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/html\r\n\r\n",
			      BODY_SIZE);
	return c;
}

/* Whether @c holds a whole request (headers end with an empty line). */
static int conn_has_request(struct conn *c)
{
	return c->req_len >= 4 && !memcmp(c->req + c->req_len - 4, "\r\n\r\n", 4);
}

static int listen_on(int port, int nonblock)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 65535))
		return -1;
	return fd;
}

/* ---- syslet: network waits armed, file reads on the handoff path ------- */

enum { OP_ACCEPT, OP_RECV, OP_READ, OP_SEND };

static uint64_t tag(int op, int fd)
{
	return (uint64_t)fd << 8 | op;
}

/* A free submission entry, after submitting what is queued if the ring is full. */
static struct syslet_sqe *syslet_next_sqe(struct syslet_ring *ring, unsigned int *queued)
{
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	if (!sqe) {
		syslet_submit_async(ring, ring->hdr->sq_entries);
		*queued = 0;
		sqe = syslet_get_sqe(ring);
	}
	if (sqe)
		(*queued)++;
	return sqe;
}

static int syslet_server(int lfd)
{
	struct syslet_pool_params params = {
		.min_spares = 1, .max_spares = SYSLET_SPARES_MAX, .idle_ms = 1000,
	};
	struct syslet_ring ring;
	unsigned int queued = 0;
	int ret;

	ret = syslet_queue_init_flags(&ring, 4096, 32768, SYSLET_SETUP_POLL);
	if (ret || syslet_pool_start(&ring, &params))
		return 1;
	for (int i = 0; i < ACCEPTS; i++) {
		struct syslet_sqe *sqe = syslet_next_sqe(&ring, &queued);

		syslet_prep(sqe, __NR_accept4, lfd, 0, 0, SOCK_CLOEXEC, 0, 0);
		sqe->user_data = tag(OP_ACCEPT, 0);
	}
	for (;;) {
		struct syslet_cqe *cqe;

		/*
		 * Everything queued goes in one exec: network calls that would
		 * wait are armed, a file read that blocks hands the loop to a
		 * spare.
		 */
		if (queued) {
			ret = syslet_submit_async(&ring, ring.hdr->sq_entries);
			if (ret < 0 && ret != -EBUSY)
				return 2;
			queued = 0;
		}
		/* Runs the armed atoms whose sockets became ready, then reaps. */
		ret = syslet_wait(&ring, 1, -1);
		if (ret < 0 && ret != -EINTR)
			return 3;
		while ((cqe = syslet_peek_cqe(&ring))) {
			int op = cqe->user_data & 0xff, fd = cqe->user_data >> 8;
			long res = cqe->res;
			struct syslet_sqe *sqe;
			struct conn *c;

			syslet_cqe_seen(&ring);
			switch (op) {
			case OP_ACCEPT:
				sqe = syslet_next_sqe(&ring, &queued);
				syslet_prep(sqe, __NR_accept4, lfd, 0, 0, SOCK_CLOEXEC, 0, 0);
				sqe->user_data = tag(OP_ACCEPT, 0);
				c = conn_new(res);
				if (!c)
					break;
				sqe = syslet_next_sqe(&ring, &queued);
				syslet_prep_recv(sqe, c->fd, c->req, REQ_MAX, 0);
				sqe->user_data = tag(OP_RECV, c->fd);
				break;
			case OP_RECV:
				c = conns[fd];
				if (res <= 0) {
					close(fd);
					break;
				}
				c->req_len += res;
				sqe = syslet_next_sqe(&ring, &queued);
				if (!conn_has_request(c)) {
					syslet_prep_recv(sqe, fd, c->req + c->req_len,
							 REQ_MAX - c->req_len, 0);
					sqe->user_data = tag(OP_RECV, fd);
					break;
				}
				c->req_len = 0;
				syslet_prep_pread(sqe, file_fd, c->resp + c->hdr_len, BODY_SIZE, 0);
				sqe->user_data = tag(OP_READ, fd);
				break;
			case OP_READ:
				c = conns[fd];
				sqe = syslet_next_sqe(&ring, &queued);
				syslet_prep_send(sqe, fd, c->resp, c->hdr_len + (res > 0 ? res : 0),
						 MSG_NOSIGNAL);
				sqe->user_data = tag(OP_SEND, fd);
				break;
			case OP_SEND:
				if (res < 0) {
					close(fd);
					break;
				}
				c = conns[fd];
				sqe = syslet_next_sqe(&ring, &queued);
				syslet_prep_recv(sqe, fd, c->req, REQ_MAX, 0);
				sqe->user_data = tag(OP_RECV, fd);
				break;
			}
		}
	}
}

/* ---- epoll and a thread pool for the file reads ------------------------ */

struct job {
	struct conn *c;
	struct job *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo, *done;
	int efd;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static void *pool_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct job *job;
		uint64_t one = 1;

		pthread_mutex_lock(&pool.lock);
		while (!pool.todo)
			pthread_cond_wait(&pool.cond, &pool.lock);
		job = pool.todo;
		pool.todo = job->next;
		pthread_mutex_unlock(&pool.lock);
		if (pread(file_fd, job->c->resp + job->c->hdr_len, BODY_SIZE, 0) != BODY_SIZE)
			abort();
		pthread_mutex_lock(&pool.lock);
		job->next = pool.done;
		pool.done = job;
		pthread_mutex_unlock(&pool.lock);
		if (write(pool.efd, &one, sizeof(one)) != sizeof(one))
			abort();
	}
	return NULL;
}

static int epoll_server(int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN }, events[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	pthread_t thread;

	pool.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.fd = lfd;
	if (ep < 0 || pool.efd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
		return 1;
	ev.data.fd = pool.efd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, pool.efd, &ev))
		return 1;
	for (int i = 0; i < POOL_THREADS; i++)
		if (pthread_create(&thread, NULL, pool_main, NULL))
			return 1;
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == lfd) {
				int cfd;

				while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					if (!conn_new(cfd)) {
						close(cfd);
						continue;
					}
					ev.data.fd = cfd;
					epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
				}
			} else if (fd == pool.efd) {
				uint64_t count;
				struct job *done;

				if (read(pool.efd, &count, sizeof(count)) < 0)
					continue;
				pthread_mutex_lock(&pool.lock);
				done = pool.done;
				pool.done = NULL;
				pthread_mutex_unlock(&pool.lock);
				while (done) {
					struct job *next = done->next;

					send(done->c->fd, done->c->resp, done->c->hdr_len + BODY_SIZE,
					     MSG_NOSIGNAL);
					free(done);
					done = next;
				}
			} else {
				struct conn *c = conns[fd];
				ssize_t got = recv(fd, c->req + c->req_len, REQ_MAX - c->req_len, 0);
				struct job *job;

				if (got <= 0) {
					if (got < 0 && errno == EAGAIN)
						continue;
					close(fd);
					continue;
				}
				c->req_len += got;
				if (!conn_has_request(c))
					continue;
				c->req_len = 0;
				job = malloc(sizeof(*job));
				job->c = c;
				pthread_mutex_lock(&pool.lock);
				job->next = pool.todo;
				pool.todo = job;
				pthread_cond_signal(&pool.cond);
				pthread_mutex_unlock(&pool.lock);
			}
		}
	}
}

/* ---- io_uring ---------------------------------------------------------- */

/* A free io_uring submission entry, after submitting what is queued if the ring is full. */
static struct io_uring_sqe *uring_next_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

static int uring_server(int lfd)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 32768 };
	struct io_uring ring;
	struct io_uring_cqe *cqe;

	if (io_uring_queue_init_params(4096, &ring, &p))
		return 1;
	for (int i = 0; i < ACCEPTS; i++) {
		struct io_uring_sqe *sqe = uring_next_sqe(&ring);

		io_uring_prep_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, 0));
	}
	for (;;) {
		unsigned int head, seen = 0;

		io_uring_submit_and_wait(&ring, 1);
		io_uring_for_each_cqe(&ring, head, cqe) {
			int op = cqe->user_data & 0xff, fd = cqe->user_data >> 8;
			int res = cqe->res;
			struct io_uring_sqe *sqe;
			struct conn *c;

			seen++;
			switch (op) {
			case OP_ACCEPT:
				sqe = uring_next_sqe(&ring);
				io_uring_prep_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
				io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, 0));
				c = conn_new(res);
				if (!c)
					break;
				sqe = uring_next_sqe(&ring);
				io_uring_prep_recv(sqe, c->fd, c->req, REQ_MAX, 0);
				io_uring_sqe_set_data64(sqe, tag(OP_RECV, c->fd));
				break;
			case OP_RECV:
				c = conns[fd];
				if (res <= 0) {
					close(fd);
					break;
				}
				c->req_len += res;
				sqe = uring_next_sqe(&ring);
				if (!conn_has_request(c)) {
					io_uring_prep_recv(sqe, fd, c->req + c->req_len,
							   REQ_MAX - c->req_len, 0);
					io_uring_sqe_set_data64(sqe, tag(OP_RECV, fd));
					break;
				}
				c->req_len = 0;
				io_uring_prep_read(sqe, file_fd, c->resp + c->hdr_len, BODY_SIZE, 0);
				io_uring_sqe_set_data64(sqe, tag(OP_READ, fd));
				break;
			case OP_READ:
				c = conns[fd];
				sqe = uring_next_sqe(&ring);
				io_uring_prep_send(sqe, fd, c->resp, c->hdr_len + (res > 0 ? res : 0),
						   MSG_NOSIGNAL);
				io_uring_sqe_set_data64(sqe, tag(OP_SEND, fd));
				break;
			case OP_SEND:
				if (res < 0) {
					close(fd);
					break;
				}
				c = conns[fd];
				sqe = uring_next_sqe(&ring);
				io_uring_prep_recv(sqe, fd, c->req, REQ_MAX, 0);
				io_uring_sqe_set_data64(sqe, tag(OP_RECV, fd));
				break;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
}

/* ---- the load generator ------------------------------------------------ */

struct client {
	int fd;
	unsigned int sent, got;		/* requests sent, bytes of the response read */
	double t0;			/* when the request in flight was sent */
	char buf[256 + BODY_SIZE];
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int threads_of(pid_t pid)
{
	char path[64], line[128];
	int threads = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &threads) == 1)
			break;
	fclose(f);
	return threads;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sends @c's next request. */
static int client_send(struct client *c)
{
	c->got = 0;
	c->t0 = now_us();
	c->sent++;
	return send(c->fd, request, sizeof(request) - 1, MSG_NOSIGNAL) == sizeof(request) - 1 ? 0 : -1;
}

static int load(const char *mode, int port, pid_t server, int nconns, int reqs, int quiet)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	unsigned int resp_len = 0, done = 0, bad = 0, total = nconns * reqs;
	double *lat = calloc(total, sizeof(double)), t_start, t_end;
	struct client *clients = calloc(nconns, sizeof(*clients));
	struct epoll_event ev, events[256];
	int ep = epoll_create1(EPOLL_CLOEXEC), peak = 0, samples = 0;
	char hdr[128];

	resp_len = snprintf(hdr, sizeof(hdr),
			    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/html\r\n\r\n",
			    BODY_SIZE) + BODY_SIZE;
	if (!lat || !clients || ep < 0)
		return 1;
	for (int i = 0; i < nconns; i++) {
		struct client *c = &clients[i];

		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr))) {
			fprintf(stderr, "httpd: connection %d: %s\n", i, strerror(errno));
			return 1;
		}
		ev.events = EPOLLIN;
		ev.data.u32 = i;
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	/* Every connection is open (and idle) now: the server's threads. */
	peak = threads_of(server);
	t_start = now_us();
	for (int i = 0; i < nconns; i++)
		if (client_send(&clients[i]))
			return 1;
	while (done < total) {
		int n = epoll_wait(ep, events, 256, 20000);

		if (n <= 0) {
			fprintf(stderr, "httpd: %s: no response for 20 s (%u of %u done)\n", mode,
				done, total);
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct client *c = &clients[events[i].data.u32];
			ssize_t got = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, 0);

			if (got <= 0) {
				fprintf(stderr, "httpd: %s: connection closed\n", mode);
				return 1;
			}
			c->got += got;
			if (c->got < resp_len)
				continue;
			if (c->got != resp_len || memcmp(c->buf, hdr, resp_len - BODY_SIZE) ||
			    memcmp(c->buf + resp_len - BODY_SIZE, body, BODY_SIZE))
				bad++;
			lat[done++] = now_us() - c->t0;
			if (c->sent < (unsigned int)reqs && client_send(c))
				return 1;
		}
		if (++samples % 64 == 0) {
			int t = threads_of(server);

			if (t > peak)
				peak = t;
		}
	}
	t_end = now_us();
	qsort(lat, total, sizeof(double), cmp_double);
	if (!quiet)
		printf("  %-7s %6d conns  %8.0f req/s  p50 %7.0f us  p99 %7.0f us  threads %d%s\n",
		       mode, nconns, total / ((t_end - t_start) / 1e6), lat[total / 2],
		       lat[(size_t)(total * 0.99)], peak, bad ? "  BAD RESPONSES" : "");
	else
		printf("httpd: %s: %u responses, %u bad, server threads at most %d\n", mode,
		       total, bad, peak);
	for (int i = 0; i < nconns; i++)
		close(clients[i].fd);
	free(clients);
	free(lat);
	if (bad)
		return 2;
	/* The syslet server's threads: the loop and its bounded pool, whatever the load. */
	if (!strcmp(mode, "syslet") && peak > 1 + SYSLET_SPARES_MAX)
		return 3;
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit nofile = { MAX_CONNS * 2 + 64, MAX_CONNS * 2 + 64 };
	const char *mode = "syslet";
	int nconns = 100, reqs = 10, quiet = 0, opt, lfd, port, status, ret;
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	pid_t server;

	while ((opt = getopt(argc, argv, "m:c:r:q")) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'r': reqs = atoi(optarg); break;
		case 'q': quiet = 1; break;
		default:
			fprintf(stderr, "usage: %s [-m syslet|epoll|uring] [-c CONNS] [-r REQS] [-q]\n",
				argv[0]);
			return 2;
		}
	}
	if (nconns < 1 || nconns > MAX_CONNS || reqs < 1)
		return 2;
	if (setrlimit(RLIMIT_NOFILE, &nofile))
		perror("httpd: RLIMIT_NOFILE");
	/* The served file: shmem, so every read is a page-cache hit. */
	for (int i = 0; i < BODY_SIZE; i++)
		body[i] = 'a' + i % 26;
	file_fd = memfd_create("index.html", MFD_CLOEXEC);
	if (file_fd < 0 || write(file_fd, body, BODY_SIZE) != BODY_SIZE)
		return 1;
	lfd = listen_on(0, !strcmp(mode, "epoll"));
	if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&addr, &len))
		return 1;
	port = ntohs(addr.sin_port);
	server = fork();
	if (server < 0)
		return 1;
	if (server == 0) {
		if (!strcmp(mode, "syslet"))
			_exit(syslet_server(lfd));
		if (!strcmp(mode, "epoll"))
			_exit(epoll_server(lfd));
		if (!strcmp(mode, "uring"))
			_exit(uring_server(lfd));
		_exit(2);
	}
	close(lfd);
	ret = load(mode, port, server, nconns, reqs, quiet);
	kill(server, SIGKILL);
	waitpid(server, &status, 0);
	return ret;
}
