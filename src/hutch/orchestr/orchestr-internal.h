/* Between orchestr's files: orchestr.c (the lifecycle), recover.c (taking sandboxes back after a
 * restart), exec.c (commands through envd). Not for other components. */
#pragma once

#include "orchestr/orchestr.h"
#include "runtime/runtime.h"

#define ORCHESTR_ENVD_PORT 49983

struct recover_env {
	struct hutch_config *cfg;
	struct store *st;
	struct netpool *np;
	const struct runtime_ops *rt;
	const char *cgroup_parent; /* the daemon's cgroup directory ("hutch-<prefix>") */
};

/* At start, before anything is served: every sandbox the store lists is re-attached when its
 * supervisor is alive and its envd answers, or destroyed and its row deleted; then whatever no
 * row accounts for (stray supervisors, RUN_DIRs, cgroups, network slots) is removed. */
void orchestr_recover(struct orchestr *o, const struct recover_env *env);

/* Registers a running sandbox found after a restart. Takes rs and slot (both stay the
 * sandbox's); uid_index is its uid range. -EBUSY when that range is taken. */
int orchestr_adopt(struct orchestr *o, const struct sandbox_rec *rec, struct runtime_sandbox *rs,
		   struct net_slot *slot, unsigned uid_index);

/* The token s's envd accepts now: the warm pool's own while it waits there, else its id's. */
void sandbox_envd_token(struct orchestr *o, const struct sandbox *s, char out[65]);

/* exec.c: runs opts->cmd in s (running or still starting) through envd. */
int sandbox_exec(struct orchestr *o, struct sandbox *s, const struct exec_opts *opts,
		 int *exit_code, char *err, size_t errlen);
