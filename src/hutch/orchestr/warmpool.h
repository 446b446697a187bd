/*
 * The warm pool: per template, a few sandboxes started ahead (shim, namespaces, root, init, envd
 * listening) but unassigned: no store row, not in the registry, so not routable and reachable by
 * no client token. A create takes one and gives it its identity (orchestr.c); a background thread
 * starts replacements. The pool knows nothing of what a member is: orchestr.c starts and
 * destroys them through warmpool_ops.
 *
 * A pool is keyed by template id and what a start takes from the template (layers, cpu, memory,
 * disk), so a template rebuilt later never hands out sandboxes of its old layers. Pools exist for
 * the templates asked for most recently (at most WARMPOOL_MAX_TEMPLATES); a template that
 * disappears loses its pool at the next check.
 */
#pragma once

#include "runtime/runtime.h"
#include "store/store.h"

#define WARMPOOL_MAX_TEMPLATES 4

struct warmpool_ops {
	/* Starts one unassigned sandbox of t; *member is the caller's handle. Runs on the pool's
	 * thread. */
	int (*start)(void *ctx, const struct template_rec *t, void **member);
	/* Destroys a member that was never taken (stale, surplus or at shutdown). */
	void (*destroy)(void *ctx, void *member);
};

struct warmpool;

/* Sandboxes the pool may hold at once with `per_template` per template: the extra uid ranges
 * and network slots the daemon must allow for. */
unsigned warmpool_capacity(unsigned per_template);

/* per_template 0 gives a pool that never holds anything (take always returns NULL). The store
 * is read (templates only) from the pool's thread. */
int warmpool_new(unsigned per_template, struct store *st, const struct warmpool_ops *ops, void *ctx,
		 struct warmpool **out);
/* Stops the thread and destroys every member. */
struct warmpool *warmpool_free(struct warmpool *p);

/* Asks for t's pool to be kept full (in the background). t is copied. */
void warmpool_want(struct warmpool *p, const struct template_rec *t);
/* A started member for t's current layers and limits, or NULL when there is none ready; the
 * caller owns it from now on. Also asks for a refill. */
void *warmpool_take(struct warmpool *p, const struct template_rec *t);
