/* Processes started by envd: spawning, output fan-out to streams, exit bookkeeping. */
#pragma once

#include "envd.h"

struct proc;

struct spawn_request {
	const char *cmd;
	const char *const *argv; /* NULL-terminated, argv[0] included */
	const char *const *envp; /* NULL-terminated */
	const char *cwd;	 /* absolute, must exist */
	const struct user_info *user;
	bool pty;
	unsigned short cols, rows;
	bool want_stdin;
	const char *tag; /* may be NULL */
	json_t *config;	 /* ProcessConfig as received; stolen */
};

/*
 * Starts a process and subscribes `first` (if not NULL) before any output can be produced, so
 * the stream sees start → data → end. On failure returns -errno and sets *msg (malloc'd).
 */
int proc_spawn(struct process_table *t, const struct spawn_request *sr, struct rpc_stream *first,
	       struct proc **out, char **msg);

/* Finds a running process (or, with include_exited, one that exited in the last 30 s). Takes a
 * reference the caller drops with proc_unref(). */
struct proc *proc_find_pid(struct process_table *t, uint32_t pid, bool include_exited);
struct proc *proc_find_tag(struct process_table *t, const char *tag, bool include_exited);
void proc_unref(struct proc *p);

uint32_t proc_pid(const struct proc *p);
/* Subscribes a stream: sends start, then (for an exited process) end + end-stream. */
int proc_attach(struct proc *p, struct rpc_stream *s);
/* Sends SIGKILL/SIGTERM through the pidfd and to the process group (background children too);
 * SIGKILL also stops waiting for output. -ESRCH once it has ended or nothing was left to signal. */
int proc_signal(struct proc *p, int sig);
/* Writes to stdin (pty=false) or the terminal (pty=true). Error codes: -EBADF not enabled or
 * closed, -ENOTTY wrong channel, -ETIMEDOUT the process did not take the input within 30 s. */
int proc_write_input(struct proc *p, bool pty, const void *data, size_t len);
/* -ENOTTY for a PTY process. Idempotent. */
int proc_close_stdin(struct proc *p);
/* -ENOTTY when the process has no terminal. */
int proc_resize(struct proc *p, unsigned short cols, unsigned short rows);
/* Appends ProcessInfo objects of running processes to arr. */
void proc_list(struct process_table *t, json_t *arr);
/* Kills the process when a Start call's Connect-Timeout-Ms passes (a stream deadline cb). */
void proc_deadline_kill(void *p);

/* The end event text for a wait status ("exit status 1", "signal: killed"). Pure, for tests. */
void proc_status_string(int code, int si_code, char *buf, size_t size);

/* ---- spawn.c ---- */
struct spawn_result {
	pid_t pid;
	int pidfd;
	int in_fd;  /* stdin pipe write end, or -1 */
	int out_fd; /* stdout read end (or -1 for PTY) */
	int err_fd;
	int pty_fd; /* PTY master, or -1 */
};
/* Forks and execs as sr->user. On failure returns -errno with *msg (malloc'd) saying why. */
int spawn_process(const struct spawn_request *sr, struct spawn_result *res, char **msg);
