#include "connect/procstream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include "common/macro.h"
#include "connect/connect.h"
#include "json/jsonx.h"

#define PROC_STREAM_MAX_ENVELOPE (16u << 20)

static void proc_event(struct proc_stream *ps, json_t *ev)
{
	if (json_object_get(ev, "start"))
		ps->started = true;
	json_t *data = json_object_get(ev, "data");
	static const char *const chan[] = { "stdout", "stderr", "pty" };
	for (int i = 0; data && i < 3; i++) {
		unsigned char *bytes;
		size_t n;
		if (jsonx_get_bytes(data, chan[i], NULL, &bytes, &n) == 0) {
			if (ps->output)
				ps->output(ps->userdata, i == 1 ? 2 : 1, (const char *)bytes, n);
			free(bytes);
		}
	}
	json_t *end = json_object_get(ev, "end");
	if (end) {
		ps->ended = true;
		json_t *code = json_object_get(end, "exitCode");
		ps->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
		if (ps->exit_code < 0)
			ps->exit_code = 128 + 9; /* ended by a signal */
	}
}

int proc_stream_feed(struct proc_stream *ps, const char *data, size_t len)
{
	if (strbuf_append(&ps->buf, data, len) < 0)
		return -ENOMEM;
	for (;;) {
		uint8_t flags;
		const char *payload;
		size_t plen;
		long used = connect_envelope_parse(
		    ps->buf.data, ps->buf.len, PROC_STREAM_MAX_ENVELOPE, &flags, &payload, &plen);
		if (used < 0)
			return -EBADMSG;
		if (used == 0)
			return 0;
		_cleanup_json_ json_t *j = json_loadb(payload, plen, 0, NULL);
		if (flags & CONNECT_FLAG_END_STREAM) {
			const char *m = json_string_value(
			    json_object_get(json_object_get(j, "error"), "message"));
			if (m)
				snprintf(ps->error, sizeof(ps->error), "%s", m);
		} else {
			proc_event(ps, json_object_get(j, "event"));
		}
		strbuf_consume(&ps->buf, (size_t)used);
	}
}

void proc_stream_done(struct proc_stream *ps)
{
	strbuf_free(&ps->buf);
}
