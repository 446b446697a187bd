/*
 * Server-streaming Connect responses. Producers (process readers, watchers) queue messages with
 * rpc_stream_send(); the connection's own HTTP thread drains them in the MHD content reader,
 * sleeping on a condition variable between events, waking for keepalives and the deadline.
 */
#include <poll.h>
#include <time.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

#define STREAM_HIGH_WATER (4u << 20)
/* A client that takes nothing from a full queue for this long loses its stream, so the producer
 * (e.g. a process's reader, shared by all its subscribers) is not held forever. */
#define STREAM_STALL_USEC (30u * 1000000u)
/* Backpressure waits in slices of this, to notice the deadline and stalls. */
#define STREAM_SEND_SLICE_USEC 1000000u
/* How often a waiting stream checks that its client is still there. */
#define STREAM_PEER_CHECK_USEC 500000u

static bool streams_stopping;

struct rpc_stream {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	struct strbuf out;
	size_t out_off;
	uint64_t consumed; /* bytes the client has taken: progress, for stalled-client detection */
	bool ended;	   /* end-stream queued */
	bool closed;	   /* client gone or response finished */
	uint64_t keepalive_usec;
	uint64_t next_keepalive;
	uint64_t deadline; /* monotonic usec, 0 = none */
	int sock;	   /* the client connection, to notice it closing; -1 unknown */
	char *keepalive_json;
	void (*deadline_cb)(void *);
	void *deadline_data;
	void (*close_cb)(struct rpc_stream *, void *);
	void *close_data;
};

struct rpc_stream *rpc_stream_new(uint64_t keepalive_usec, uint64_t deadline, int sock);
ssize_t rpc_stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void rpc_stream_finished(void *cls);

void rpc_streams_stop(void)
{
	__atomic_store_n(&streams_stopping, true, __ATOMIC_SEQ_CST);
}

/* True when the client hung up (or envd is stopping). */
static bool peer_gone(int sock)
{
	if (__atomic_load_n(&streams_stopping, __ATOMIC_SEQ_CST))
		return true;
	if (sock < 0)
		return false;
	struct pollfd p = { .fd = sock, .events = POLLRDHUP };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

struct rpc_stream *rpc_stream_new(uint64_t keepalive_usec, uint64_t deadline, int sock)
{
	struct rpc_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->refs = 1;
	s->keepalive_usec = keepalive_usec;
	s->next_keepalive = now_usec() + keepalive_usec;
	s->deadline = deadline;
	s->sock = sock;
	return s;
}

struct rpc_stream *rpc_stream_ref(struct rpc_stream *s)
{
	pthread_mutex_lock(&s->lock);
	s->refs++;
	pthread_mutex_unlock(&s->lock);
	return s;
}

void rpc_stream_unref(struct rpc_stream *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (!last)
		return;
	strbuf_free(&s->out);
	free(s->keepalive_json);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void rpc_stream_set_keepalive(struct rpc_stream *s, const char *keepalive_json)
{
	free(s->keepalive_json);
	s->keepalive_json = strdup(keepalive_json);
}

void rpc_stream_set_deadline_cb(struct rpc_stream *s, void (*cb)(void *), void *userdata)
{
	s->deadline_cb = cb;
	s->deadline_data = userdata;
}

void rpc_stream_set_close_cb(struct rpc_stream *s, void (*cb)(struct rpc_stream *, void *),
			     void *userdata)
{
	s->close_cb = cb;
	s->close_data = userdata;
}

bool rpc_stream_is_closed(struct rpc_stream *s)
{
	pthread_mutex_lock(&s->lock);
	bool c = s->closed || s->ended;
	pthread_mutex_unlock(&s->lock);
	return c;
}

static void deadline_ts(struct timespec *ts, uint64_t usec)
{
	ts->tv_sec = (time_t)(usec / 1000000u);
	ts->tv_nsec = (long)(usec % 1000000u) * 1000;
}

static void end_locked(struct rpc_stream *s, enum connect_code code, const char *message);

/* Runs the deadline callback once the deadline has passed and ends the stream. Called with the
 * lock held; drops it around the callback. */
static bool deadline_check_locked(struct rpc_stream *s, uint64_t now)
{
	if (!s->deadline || now < s->deadline)
		return false;
	s->deadline = 0;
	void (*cb)(void *) = s->deadline_cb;
	s->deadline_cb = NULL;
	pthread_mutex_unlock(&s->lock);
	if (cb)
		cb(s->deadline_data);
	pthread_mutex_lock(&s->lock);
	end_locked(s, CONNECT_DEADLINE_EXCEEDED, "context deadline exceeded");
	return true;
}

int rpc_stream_send(struct rpc_stream *s, json_t *msg)
{
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!text)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	uint64_t progress_at = now_usec();
	uint64_t seen = s->consumed;
	while (!s->closed && !s->ended && s->out.len - s->out_off > STREAM_HIGH_WATER) {
		uint64_t now = now_usec();
		if (s->consumed != seen) {
			seen = s->consumed;
			progress_at = now;
		}
		/* The client may not read again before the deadline: the kill must not wait. */
		if (deadline_check_locked(s, now))
			break;
		if (now - progress_at >= STREAM_STALL_USEC) {
			log_debug("stream: client took nothing for %u s; ending its stream",
				  STREAM_STALL_USEC / 1000000u);
			end_locked(s, CONNECT_RESOURCE_EXHAUSTED,
				   "client is not reading the stream: output dropped");
			break;
		}
		struct timespec ts;
		uint64_t wake = now + STREAM_SEND_SLICE_USEC;
		if (s->deadline && s->deadline < wake)
			wake = s->deadline;
		deadline_ts(&ts, wake);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	int r = -EPIPE;
	if (!s->closed && !s->ended) {
		r = connect_envelope_append(&s->out, 0, text, strlen(text));
		s->next_keepalive = now_usec() + s->keepalive_usec;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	free(text);
	return r;
}

static void end_locked(struct rpc_stream *s, enum connect_code code, const char *message)
{
	if (s->ended || s->closed)
		return;
	connect_end_stream_append(&s->out, code, message);
	s->ended = true;
	pthread_cond_broadcast(&s->cond);
}

void rpc_stream_end(struct rpc_stream *s, enum connect_code code, const char *message)
{
	pthread_mutex_lock(&s->lock);
	end_locked(s, code, message);
	pthread_mutex_unlock(&s->lock);
}

ssize_t rpc_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct rpc_stream *s = cls;
	(void)pos;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		uint64_t now = now_usec();
		/* Before handing out queued data too: a slow client must not delay the kill. */
		if (deadline_check_locked(s, now))
			continue;
		if (s->out.len > s->out_off)
			break;
		if (s->ended || s->closed) {
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (now >= s->next_keepalive && s->keepalive_json) {
			connect_envelope_append(&s->out, 0, s->keepalive_json,
						strlen(s->keepalive_json));
			s->next_keepalive = now + s->keepalive_usec;
			continue;
		}
		if (peer_gone(s->sock)) {
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		uint64_t wake = MIN(s->next_keepalive, now + STREAM_PEER_CHECK_USEC);
		if (s->deadline && s->deadline < wake)
			wake = s->deadline;
		struct timespec ts;
		deadline_ts(&ts, wake);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	size_t n = MIN(max, s->out.len - s->out_off);
	memcpy(buf, s->out.data + s->out_off, n);
	s->out_off += n;
	s->consumed += n;
	if (s->out_off == s->out.len) {
		strbuf_reset(&s->out);
		s->out_off = 0;
	} else if (s->out_off > (1u << 20)) {
		strbuf_consume(&s->out, s->out_off);
		s->out_off = 0;
	}
	pthread_cond_broadcast(&s->cond); /* wake producers held back by backpressure */
	pthread_mutex_unlock(&s->lock);
	return (ssize_t)n;
}

/* MHD is done with the response (sent, or the client went away). */
void rpc_stream_finished(void *cls)
{
	struct rpc_stream *s = cls;
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	void (*cb)(struct rpc_stream *, void *) = s->close_cb;
	s->close_cb = NULL;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (cb)
		cb(s, s->close_data);
	rpc_stream_unref(s);
}
