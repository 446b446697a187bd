/* Between orchestr.c (the lifecycle) and recover.c (taking sandboxes back after a restart). */
#pragma once

#include "orchestr/orchestr.h"
#include "runtime/runtime.h"

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
