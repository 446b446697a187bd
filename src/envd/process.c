/*
 * Process lifecycle. Each process has one reader thread that polls its output fds and its pidfd,
 * fans output out to the subscribed streams and reaps it. A slow subscriber holds back only its
 * own process (rpc_stream_send blocks), never envd or other processes; one that makes no progress
 * for 30 s loses its stream, so it cannot hold back the process's other subscribers for long.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include "process.h"
#include "common/log.h"
#include "common/util.h"

#define EXITED_RETENTION_USEC (30u * 1000000u)
#define PIPE_CHUNK	      (32 * 1024)
#define PTY_CHUNK	      (16 * 1024)
#define MAX_PROCESSES	      4096
/* How long SendInput waits for a process that does not read its input. */
#define INPUT_WRITE_TIMEOUT_MSEC 30000

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct sub {
	struct rpc_stream *s;
	struct sub *next;
};

struct proc {
	pthread_mutex_t lock;
	int refs;
	struct process_table *table;
	uint32_t pid;
	char *tag;
	json_t *config;
	bool pty;
	int in_fd;  /* stdin pipe (non-PTY); -1 when not enabled or closed */
	int pty_fd; /* PTY master: output and input */
	int out_fd, err_fd;
	int pidfd;   /* closed once the process is reaped and ended */
	int wake_fd; /* eventfd: wakes the reader when the process is killed */
	bool ended;
	bool killed; /* by SendSignal or a deadline: don't wait for EOF from descendants */
	char *end_json;
	uint64_t ended_at;
	struct sub *subs; /* oldest first: the Start stream leads */
	/* The reader thread's scratch list of broadcast targets. */
	struct rpc_stream **targets;
	size_t targets_cap;
	struct proc *next;
};

struct process_table {
	pthread_mutex_t lock;
	struct proc *list;
	unsigned running;
};

int process_table_new(struct process_table **out)
{
	struct process_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

void process_table_free(struct process_table *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	for (struct proc *p = t->list; p; p = p->next)
		proc_signal(p, SIGKILL);
	pthread_mutex_unlock(&t->lock);
	/* Reader threads hold references and finish on their own; the table itself stays
	 * allocated for them (envd is exiting). */
}

static struct proc *proc_ref(struct proc *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_SEQ_CST);
	return p;
}

void proc_unref(struct proc *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->pty_fd >= 0)
		close(p->pty_fd);
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	free(p->targets);
	json_decref(p->config);
	free(p->tag);
	free(p->end_json);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

uint32_t proc_pid(const struct proc *p)
{
	return p->pid;
}

/* Drops exited entries past their retention. Called with t->lock held. */
static void table_prune_locked(struct process_table *t)
{
	uint64_t now = now_usec();
	for (struct proc **pp = &t->list; *pp;) {
		struct proc *p = *pp;
		pthread_mutex_lock(&p->lock);
		bool stale = p->ended && now - p->ended_at > EXITED_RETENTION_USEC;
		pthread_mutex_unlock(&p->lock);
		if (stale) {
			*pp = p->next;
			proc_unref(p);
		} else {
			pp = &p->next;
		}
	}
}

static struct proc *find(struct process_table *t, uint32_t pid, const char *tag, bool exited)
{
	struct proc *found = NULL;
	pthread_mutex_lock(&t->lock);
	table_prune_locked(t);
	for (struct proc *p = t->list; p; p = p->next) {
		if (tag ? !streq(p->tag, tag) : p->pid != pid)
			continue;
		pthread_mutex_lock(&p->lock);
		bool ended = p->ended;
		pthread_mutex_unlock(&p->lock);
		if (!ended) {
			found = p;
			break;
		}
		if (exited && !found)
			found = p;
	}
	if (found)
		proc_ref(found);
	pthread_mutex_unlock(&t->lock);
	return found;
}

struct proc *proc_find_pid(struct process_table *t, uint32_t pid, bool include_exited)
{
	return find(t, pid, NULL, include_exited);
}

struct proc *proc_find_tag(struct process_table *t, const char *tag, bool include_exited)
{
	return find(t, 0, tag, include_exited);
}

void proc_status_string(int code, int si_code, char *buf, size_t size)
{
	/* Go's os.ProcessState.String() names, which envd reports. */
	static const char *const names[] = {
		[SIGHUP] = "hangup",
		[SIGINT] = "interrupt",
		[SIGQUIT] = "quit",
		[SIGILL] = "illegal instruction",
		[SIGTRAP] = "trace/breakpoint trap",
		[SIGABRT] = "aborted",
		[SIGBUS] = "bus error",
		[SIGFPE] = "floating point exception",
		[SIGKILL] = "killed",
		[SIGUSR1] = "user defined signal 1",
		[SIGSEGV] = "segmentation fault",
		[SIGUSR2] = "user defined signal 2",
		[SIGPIPE] = "broken pipe",
		[SIGALRM] = "alarm clock",
		[SIGTERM] = "terminated",
	};
	if (si_code == CLD_EXITED) {
		snprintf(buf, size, "exit status %d", code);
		return;
	}
	const char *name = code > 0 && code < (int)ELEMENTSOF(names) ? names[code] : NULL;
	if (name)
		snprintf(buf, size, "signal: %s%s", name,
			 si_code == CLD_DUMPED ? " (core dumped)" : "");
	else
		snprintf(buf, size, "signal: signal %d%s", code,
			 si_code == CLD_DUMPED ? " (core dumped)" : "");
}

static json_t *event(const char *kind, json_t *body)
{
	return json_pack("{s:{s:o}}", "event", kind, body);
}

/* Sends to every subscriber (only the reader thread calls this: p->targets is its own). */
static void broadcast(struct proc *p, json_t *msg)
{
	size_t n = 0;
	pthread_mutex_lock(&p->lock);
	size_t want = 0;
	for (struct sub *s = p->subs; s; s = s->next)
		want++;
	if (want > p->targets_cap) {
		size_t cap = MAX(want, p->targets_cap * 2);
		struct rpc_stream **t = realloc(p->targets, cap * sizeof(*t));
		if (t) {
			p->targets = t;
			p->targets_cap = cap;
		} else {
			log_warn("process %u: out of memory: output not sent to %zu newest "
				 "subscribers",
				 p->pid, want - p->targets_cap);
		}
	}
	/* Oldest first, so under memory pressure the Start stream still gets everything. */
	for (struct sub *s = p->subs; s && n < p->targets_cap; s = s->next)
		p->targets[n++] = rpc_stream_ref(s->s);
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < n; i++) {
		rpc_stream_send(p->targets[i], json_incref(msg));
		rpc_stream_unref(p->targets[i]);
	}
	json_decref(msg);
}

static void send_output(struct proc *p, const char *channel, const char *buf, size_t len)
{
	_cleanup_free_ char *b64 = base64_encode(buf, len, true);
	if (!b64)
		return;
	broadcast(p, event("data", json_pack("{s:s}", channel, b64)));
}

/* Reads once from fd. Returns bytes read, 0 at EOF (EIO on a PTY counts as EOF), -EAGAIN. */
static ssize_t pump(struct proc *p, int fd, const char *channel, size_t chunk)
{
	char buf[PIPE_CHUNK];
	ssize_t n;
	do
		n = read(fd, buf, MIN(chunk, sizeof(buf)));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : 0;
	if (n > 0)
		send_output(p, channel, buf, (size_t)n);
	return n;
}

static void finish(struct proc *p, const siginfo_t *si)
{
	char status[96];
	proc_status_string(si->si_status, si->si_code, status, sizeof(status));
	json_t *end;
	/* protojson leaves zero values out: exitCode 0 and exited=false are absent. */
	if (si->si_code == CLD_EXITED)
		end = json_pack("{s:b, s:s}", "exited", 1, "status", status);
	else
		end = json_pack("{s:i, s:s}", "exitCode", -1, "status", status);
	if (end && si->si_code == CLD_EXITED && si->si_status != 0)
		json_object_set_new(end, "exitCode", json_integer(si->si_status));
	if (end && (si->si_code != CLD_EXITED || si->si_status != 0))
		json_object_set_new(end, "error", json_string(status));
	json_t *msg = event("end", end);
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;

	pthread_mutex_lock(&p->lock);
	p->ended = true;
	p->ended_at = now_usec();
	p->end_json = text;
	struct sub *subs = p->subs;
	p->subs = NULL;
	/* Reaped and drained: nothing needs these fds any more, and an exited process must not
	 * hold fds for its whole retention. */
	if (p->in_fd >= 0) {
		close(p->in_fd);
		p->in_fd = -1;
	}
	if (p->pty_fd >= 0) {
		close(p->pty_fd);
		p->pty_fd = -1;
	}
	if (p->pidfd >= 0) {
		close(p->pidfd);
		p->pidfd = -1;
	}
	if (p->wake_fd >= 0) {
		close(p->wake_fd);
		p->wake_fd = -1;
	}
	pthread_mutex_unlock(&p->lock);

	pthread_mutex_lock(&p->table->lock);
	p->table->running--;
	pthread_mutex_unlock(&p->table->lock);

	while (subs) {
		struct sub *next = subs->next;
		rpc_stream_send(subs->s, json_incref(msg));
		rpc_stream_end(subs->s, CONNECT_OK, NULL);
		rpc_stream_unref(subs->s);
		free(subs);
		subs = next;
	}
	json_decref(msg);
}

static void *reader_main(void *arg)
{
	struct proc *p = arg;
	int out = p->pty ? p->pty_fd : p->out_fd;
	int err = p->pty ? -1 : p->err_fd;
	const char *out_channel = p->pty ? "pty" : "stdout";
	size_t chunk = p->pty ? PTY_CHUNK : PIPE_CHUNK;
	bool reaped = false;
	siginfo_t si = { 0 };

	for (;;) {
		struct pollfd fds[4] = {
			{ .fd = out, .events = POLLIN },
			{ .fd = err, .events = POLLIN },
			{ .fd = reaped ? -1 : p->pidfd, .events = POLLIN },
			{ .fd = p->wake_fd, .events = POLLIN },
		};
		if (out < 0 && err < 0 && reaped)
			break;
		if (reaped && __atomic_load_n(&p->killed, __ATOMIC_SEQ_CST)) {
			/* Killed: take what is buffered now, don't wait for descendants. */
			fd_set_nonblock(out, true);
			if (err >= 0)
				fd_set_nonblock(err, true);
			while (out >= 0 && pump(p, out, out_channel, chunk) > 0)
				;
			while (err >= 0 && pump(p, err, "stderr", PIPE_CHUNK) > 0)
				;
			break;
		}
		if (poll(fds, ELEMENTSOF(fds), -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[3].revents) {
			/* A kill: back to the top, which drains and finishes once reaped. */
			uint64_t v;
			if (read(p->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_debug("process %u: wake read: %m", p->pid);
		}
		if (fds[0].revents && pump(p, out, out_channel, chunk) == 0) {
			if (out != p->pty_fd)
				close(out);
			out = -1;
		}
		if (fds[1].revents && pump(p, err, "stderr", PIPE_CHUNK) == 0) {
			close(err);
			err = -1;
		}
		if (fds[2].revents) {
			if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED) == 0)
				reaped = true;
			else if (errno != EINTR)
				reaped = true; /* ECHILD: someone else reaped it */
		}
	}
	if (out >= 0 && out != p->pty_fd)
		close(out);
	if (err >= 0)
		close(err);
	p->out_fd = p->err_fd = -1;
	finish(p, &si);
	proc_unref(p);
	return NULL;
}

static void close_sub(struct rpc_stream *s, void *userdata)
{
	struct proc *p = userdata;
	pthread_mutex_lock(&p->lock);
	for (struct sub **pp = &p->subs; *pp; pp = &(*pp)->next) {
		if ((*pp)->s == s) {
			struct sub *dead = *pp;
			*pp = dead->next;
			rpc_stream_unref(dead->s);
			free(dead);
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	proc_unref(p);
}

int proc_attach(struct proc *p, struct rpc_stream *s)
{
	struct sub *sub = calloc(1, sizeof(*sub));
	if (!sub)
		return -ENOMEM;
	pthread_mutex_lock(&p->lock);
	rpc_stream_send(s, event("start", json_pack("{s:i}", "pid", (json_int_t)p->pid)));
	if (p->ended) {
		json_t *end = p->end_json ? json_loads(p->end_json, 0, NULL) : NULL;
		if (end)
			rpc_stream_send(s, end);
		rpc_stream_end(s, CONNECT_OK, NULL);
		pthread_mutex_unlock(&p->lock);
		free(sub);
		return 0;
	}
	sub->s = rpc_stream_ref(s);
	struct sub **tail = &p->subs;
	while (*tail)
		tail = &(*tail)->next;
	*tail = sub;
	pthread_mutex_unlock(&p->lock);
	rpc_stream_set_close_cb(s, close_sub, proc_ref(p));
	return 0;
}

int proc_signal(struct proc *p, int sig)
{
	pthread_mutex_lock(&p->lock);
	int r = 0;
	if (p->ended) {
		r = -ESRCH;
	} else {
		/*
		 * The leader through its pidfd (exact even after it exited, unlike a pid), and its
		 * process group (spawn_process calls setsid(), so the group is the command and its
		 * background children). The leader may be gone while children still hold its
		 * pipes open; the group then still exists and keeps its id from being reused.
		 */
		int r_fd = 0, r_grp = 0;
		if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
			r_fd = -errno;
		if (kill(-(pid_t)p->pid, sig) < 0)
			r_grp = -errno;
		r = r_fd == 0 || r_grp == 0 ? 0 : r_fd;
		if (sig == SIGKILL) {
			__atomic_store_n(&p->killed, true, __ATOMIC_SEQ_CST);
			uint64_t one = 1;
			if (p->wake_fd >= 0 && write(p->wake_fd, &one, sizeof(one)) < 0)
				log_debug("process %u: cannot wake reader: %m", p->pid);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

void proc_deadline_kill(void *userdata)
{
	proc_signal(userdata, SIGKILL);
}

/* Writes all of data to a non-blocking fd within timeout_msec: 0, -ETIMEDOUT or -errno. */
static int write_bounded(int fd, const uint8_t *data, size_t len, int timeout_msec)
{
	int r = fd_set_nonblock(fd, true);
	if (r < 0)
		return r;
	uint64_t deadline = now_usec() + (uint64_t)timeout_msec * 1000u;
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		uint64_t now = now_usec();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int left = (int)((deadline - now + 999) / 1000);
		if (poll(&pfd, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

int proc_write_input(struct proc *p, bool pty, const void *data, size_t len)
{
	pthread_mutex_lock(&p->lock);
	int fd = -1, r = 0;
	if (p->ended)
		r = -ESRCH;
	else if (pty != p->pty)
		r = -ENOTTY;
	else if ((pty ? p->pty_fd : p->in_fd) < 0)
		r = -EBADF;
	else if ((fd = fcntl(pty ? p->pty_fd : p->in_fd, F_DUPFD_CLOEXEC, 3)) < 0)
		r = -errno;
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		return r;
	/* Written without the lock, so a process that doesn't read can't block a kill, and
	 * non-blocking with a bound, so it can't hold this connection's thread forever either.
	 * O_NONBLOCK is shared with p's fd: the reader copes with EAGAIN on a PTY. */
	r = write_bounded(fd, data, len, INPUT_WRITE_TIMEOUT_MSEC);
	close(fd);
	return r;
}

int proc_close_stdin(struct proc *p)
{
	pthread_mutex_lock(&p->lock);
	int r = 0;
	if (p->pty) {
		r = -ENOTTY;
	} else if (p->in_fd >= 0) {
		close(p->in_fd);
		p->in_fd = -1;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

int proc_resize(struct proc *p, unsigned short cols, unsigned short rows)
{
	pthread_mutex_lock(&p->lock);
	int r = 0;
	if (!p->pty || p->pty_fd < 0) {
		r = -ENOTTY;
	} else {
		struct winsize ws = { .ws_row = rows, .ws_col = cols };
		if (ioctl(p->pty_fd, TIOCSWINSZ, &ws) < 0)
			r = -errno;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

void proc_list(struct process_table *t, json_t *arr)
{
	pthread_mutex_lock(&t->lock);
	table_prune_locked(t);
	for (struct proc *p = t->list; p; p = p->next) {
		pthread_mutex_lock(&p->lock);
		if (!p->ended) {
			json_t *info =
			    json_pack("{s:O, s:i}", "config", p->config, "pid", (json_int_t)p->pid);
			if (info && p->tag)
				json_object_set_new(info, "tag", json_string(p->tag));
			if (info)
				json_array_append_new(arr, info);
		}
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Kills and reaps a process that never got a reader, and closes what spawn_process returned. */
static void spawn_result_abandon(struct spawn_result *res)
{
	syscall(SYS_pidfd_send_signal, res->pidfd, SIGKILL, NULL, 0);
	kill(-res->pid, SIGKILL);
	waitpid(res->pid, NULL, 0);
	int *fds[] = { &res->pidfd, &res->in_fd, &res->out_fd, &res->err_fd, &res->pty_fd };
	for (size_t i = 0; i < ELEMENTSOF(fds); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

int proc_spawn(struct process_table *t, const struct spawn_request *sr, struct rpc_stream *first,
	       struct proc **out, char **msg)
{
	pthread_mutex_lock(&t->lock);
	/* Exited entries hold memory until pruned; Start prunes too, not only List/Connect. */
	table_prune_locked(t);
	bool full = t->running >= MAX_PROCESSES;
	pthread_mutex_unlock(&t->lock);
	if (full) {
		*msg = rpc_msg("too many processes (limit %d)", MAX_PROCESSES);
		return -EAGAIN;
	}

	struct spawn_result res;
	int r = spawn_process(sr, &res, msg);
	if (r < 0)
		return r;

	struct proc *p = calloc(1, sizeof(*p));
	int wake_fd = p ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
	if (!p || wake_fd < 0) {
		r = p ? -errno : -ENOMEM;
		free(p);
		spawn_result_abandon(&res);
		*msg = rpc_msg("error starting process '%s': %s", sr->cmd, strerror(-r));
		return r;
	}
	pthread_mutex_init(&p->lock, NULL);
	p->refs = 1; /* the table's */
	p->table = t;
	p->pid = (uint32_t)res.pid;
	p->tag = sr->tag ? strdup(sr->tag) : NULL;
	p->config = json_incref(sr->config);
	p->pty = sr->pty;
	p->in_fd = res.in_fd;
	p->pty_fd = res.pty_fd;
	p->out_fd = res.out_fd;
	p->err_fd = res.err_fd;
	p->pidfd = res.pidfd;
	p->wake_fd = wake_fd;

	/* Before the process joins the table: a Start stream that cannot subscribe must not
	 * leave a process running that nobody can see the end of (and its deadline callback
	 * relies on the reference the subscription holds). */
	if (first && (r = proc_attach(p, first)) < 0) {
		spawn_result_abandon(&res);
		p->in_fd = p->pty_fd = p->out_fd = p->err_fd = p->pidfd = -1;
		proc_unref(p);
		*msg = rpc_msg("error starting process '%s': %s", sr->cmd, strerror(-r));
		return r;
	}

	pthread_mutex_lock(&t->lock);
	p->next = t->list;
	t->list = p;
	t->running++;
	pthread_mutex_unlock(&t->lock);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	pthread_t th;
	r = -pthread_create(&th, &attr, reader_main, proc_ref(p));
	pthread_attr_destroy(&attr);
	if (r < 0) {
		/* No reader: kill, reap and report the process as ended. */
		proc_unref(p);
		proc_signal(p, SIGKILL);
		siginfo_t si = { 0 };
		waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED);
		if (p->out_fd >= 0)
			close(p->out_fd);
		if (p->err_fd >= 0)
			close(p->err_fd);
		p->out_fd = p->err_fd = -1;
		finish(p, &si);
		*msg = rpc_msg("error starting output reader: %s", strerror(-r));
		return r;
	}
	if (out)
		*out = proc_ref(p);
	return 0;
}
