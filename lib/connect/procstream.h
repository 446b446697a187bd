/* A client's reader for the response stream of envd's process.Process/Start (and /Connect):
 * Connect envelopes of {"event": {"start" | "data" | "end" | "keepalive"}} and the final
 * end-of-stream envelope, which may carry {"error": {"code", "message"}}. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include "common/strbuf.h"

struct proc_stream {
	/* Set by the caller: output as it arrives, fd 1 (stdout and pty) or 2 (stderr). */
	void (*output)(void *userdata, int fd, const char *data, size_t len);
	void *userdata;
	/* Read by the caller. */
	bool started, ended;
	int exit_code;	 /* with ended: the exit code, 128 + 9 when a signal ended it */
	char error[512]; /* the end-of-stream error's message, "" if none */
	struct strbuf buf;
};

/* Consumes response bytes. -EBADMSG on a malformed or oversized (16 MiB) envelope, -ENOMEM. */
int proc_stream_feed(struct proc_stream *ps, const char *data, size_t len);
void proc_stream_done(struct proc_stream *ps);
