/*
 * The sandbox lifecycle: create (template → network slot → runtime → store), timeouts (the
 * evictor), kill. Holds the live sandboxes in memory for the front door; store/ holds the truth.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "net/netpool.h"
#include "store/store.h"

struct orchestr;
struct sandbox;

/* An error for an API answer: HTTP status + message. */
struct api_error {
	unsigned status;
	char message[512];
};

struct create_request {
	const char *template_id;
	unsigned timeout_s;	/* 0: the default */
	const json_t *metadata; /* object str→str or NULL */
	const json_t *env_vars; /* object str→str or NULL */
	bool allow_internet;
	bool auto_pause;
	const json_t *extra; /* stored as-is (network, mcp, lifecycle...) or NULL */
	const char *key_id;
	/* A template build's sandbox (template/builder.c): starts from these layers (lowest
	 * first, NULL-terminated) instead of a stored template, so template_id is only a label;
	 * keeps its upper layer in upper_dir; `config` gives envVars, user and workdir. */
	const char *const *layers;
	const char *upper_dir;
	const json_t *config;
	/* Called once the sandbox's host uid range is known, before anything runs in it (a
	 * build prepares its upper layer there). <0 fails the create. */
	int (*before_start)(void *userdata, uint32_t uid_base);
	void *userdata;
};

/* A command for orchestr_exec. */
struct exec_opts {
	const char *cmd; /* run as `/bin/bash -l -c CMD` (with sh: `/bin/sh -c CMD`) */
	bool sh;
	const char *user;   /* NULL: root */
	const json_t *envs; /* object str→str added to envd's, or NULL */
	const char *cwd;    /* NULL: the user's home */
	const char *tag;
	bool background;     /* return once it runs; it keeps running after we hang up */
	unsigned timeout_ms; /* 0: none */
	/* Output as it comes (fd 1 or 2), from the calling thread. */
	void (*output)(void *userdata, int fd, const char *buf, size_t len);
	void *userdata;
};

int orchestr_new(struct hutch_config *cfg, struct store *st, struct netpool *np,
		 struct orchestr **out);
/* Stops the evictor; with kill_all, destroys every sandbox (SIGTERM of the daemon). */
struct orchestr *orchestr_free(struct orchestr *o, bool kill_all);

/* Keeps sandboxes of template id (a ready one: the base template at start) started ahead from
 * now on, as if one had just been created from it. -ENOENT when it has no ready build. */
int orchestr_warm_template(struct orchestr *o, const char *id);

/* Creates a running sandbox; *out is its record (caller clears). template_id is an id, a name
 * (its newest ready build) or `name:tag`. When the template has a start command, it is started
 * in the new sandbox and its ready command polled before this returns (there are no memory
 * snapshots to resume from, so each sandbox runs it). */
int orchestr_create(struct orchestr *o, const struct create_request *req, struct sandbox_rec *out,
		    struct api_error *err);
/* Runs a command in a running sandbox through its envd and waits for it (unless background).
 * 0 with its exit status in *exit_code (128+9 when a signal ended it); -ETIMEDOUT, -EIO, -ENOENT
 * with a message in err. */
int orchestr_exec(struct orchestr *o, const char *id, const struct exec_opts *opts, int *exit_code,
		  char *err, size_t errlen);
/* -ENOENT when unknown (or already gone). */
int orchestr_kill(struct orchestr *o, const char *id);
/* Sets the end to now + timeout_s; with only_extend never moves it earlier. *end_ms is the new
 * end. -ENOENT when unknown. */
int orchestr_set_timeout(struct orchestr *o, const char *id, unsigned timeout_s, bool only_extend,
			 int64_t *end_ms);
int orchestr_stats(struct orchestr *o, const char *id, json_t **metric);
/* The sandbox's envd log lines as [{timestamp, line}] (new ref). */
int orchestr_logs(struct orchestr *o, const char *id, json_t **logs);

/* Tokens derived from the id under the server secret (hex HMAC-SHA256). */
void orchestr_envd_token(struct orchestr *o, const char *id, char out[65]);
void orchestr_traffic_token(struct orchestr *o, const char *id, char out[65]);

/* ---- for the front door ---- */
/* A running sandbox, referenced; NULL when unknown, stopping or gone. */
struct sandbox *orchestr_get(struct orchestr *o, const char *id);
/* The running sandbox whose envd token signs (path, op, user, expiration) to `signature`, for
 * signed /files URLs that carry no sandbox id. Referenced, or NULL. */
struct sandbox *orchestr_find_by_signature(struct orchestr *o, const char *path, const char *op,
					   const char *user, const char *expiration,
					   const char *signature);
struct sandbox *sandbox_ref(struct sandbox *s);
void sandbox_unref(struct sandbox *s);
const char *sandbox_id(const struct sandbox *s);
int sandbox_netns_fd(const struct sandbox *s);
/* A TCP connection to 127.0.0.1:port inside the sandbox's network namespace, made under the
 * sandbox's lock so it can never race the release of its network slot. -ESHUTDOWN once the
 * sandbox is being killed. */
int sandbox_connect(struct sandbox *s, uint16_t port);
/* The token requests to its ports (other than envd's) must carry in E2B-Traffic-Access-Token,
 * or NULL when its traffic is public (the default). */
const char *sandbox_traffic_token(const struct sandbox *s);

/* A front-door connection attached to a sandbox; cut() is called (from another thread) when
 * the sandbox is killed, so open streams end at once. */
struct sandbox_link {
	void (*cut)(struct sandbox_link *l);
	struct sandbox_link *next, *prev;
};
/* Returns -ESHUTDOWN when the sandbox is already being killed. */
int sandbox_link_add(struct sandbox *s, struct sandbox_link *l);
void sandbox_link_remove(struct sandbox *s, struct sandbox_link *l);
