/* orchestr's files share these (not for other components). */
#pragma once

#include "orchestr/orchestr.h"

#define ORCHESTR_ENVD_PORT 49983

/* exec.c: runs opts->cmd in s (running or still starting) through envd. */
int sandbox_exec(struct orchestr *o, struct sandbox *s, const struct exec_opts *opts,
		 int *exit_code, char *err, size_t errlen);
