/*
 * A small request/route layer over libmicrohttpd. Each connection gets its own thread
 * (MHD_USE_THREAD_PER_CONNECTION), so a route's stream reader may block waiting for data
 * without stalling other clients.
 */
#pragma once

#include <microhttpd.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "common/strbuf.h"

struct http_req;

struct http_route {
	/* Headers are known. Return 0 to go on, or queue a response (it ends the request). */
	int (*begin)(struct http_req *req);
	/* A chunk of the request body. NULL: the body is buffered into req->body (up to
	 * req->body_limit, else 413). Return <0 after queueing an error response. */
	int (*data)(struct http_req *req, const char *buf, size_t len);
	/* The body is complete: queue a response. */
	int (*finish)(struct http_req *req);
	/* The request is over (response sent or connection lost): free req->state. */
	void (*cleanup)(struct http_req *req);
};

struct http_req {
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	void *userdata; /* the server's */
	const struct http_route *route;
	void *state; /* the route's */
	struct strbuf body;
	size_t body_limit;
	bool responded;
	bool failed; /* the route reported failure; the rest of the body is discarded */
	unsigned status;
	/* A response made before the body was read is held back until it has been, since
	 * libmicrohttpd closes the connection after an "early" response. */
	bool in_final;
	bool cors;
	struct MHD_Response *pending;
};

/* Picks the route for a request; may queue a response itself and return NULL. */
typedef const struct http_route *(*http_router_fn)(struct http_req *req);

struct http_server_config {
	const char *address; /* IPv4/IPv6 literal */
	uint16_t port;
	unsigned connection_limit; /* open connections in all (default 1024) */
	unsigned per_ip_limit;	   /* open connections from one client address (0: no cap) */
	unsigned idle_timeout_s;   /* close a connection silent this long (0: never) */
	size_t connection_memory;  /* request line + headers + read buffer (default 128 KiB) */
	size_t thread_stack_size;
	http_router_fn router;
	void *userdata;
	bool cors;     /* add permissive CORS headers to every response (envd does) */
	bool raw_urls; /* leave the path and query values %-escaped (a proxy forwards them) */
};

struct http_server;

int http_server_start(const struct http_server_config *cfg, struct http_server **out);
/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);
struct http_server *http_server_stop(struct http_server *s);

const char *http_header(struct http_req *req, const char *name);
const char *http_query(struct http_req *req, const char *name);

/* Adds the permissive CORS headers envd sends on every response. */
void http_add_cors(struct MHD_Response *resp);

/* Queues resp (taking ownership). */
int http_queue(struct http_req *req, unsigned status, struct MHD_Response *resp);
int http_respond_empty(struct http_req *req, unsigned status);
int http_respond_buffer(struct http_req *req, unsigned status, const char *content_type,
			const void *data, size_t len);
/* Takes a reference to j's ownership (steals it). */
int http_respond_json(struct http_req *req, unsigned status, json_t *j);
/* {"code": status, "message": message} with status; returns -EPROTO so callers can propagate. */
int http_respond_error(struct http_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
