/*
 * The orchestrator's one call to a running envd: POST /init (PROTOCOL §4), which hands a warm
 * sandbox its identity (access token, environment, default user, clock). Sent straight into the
 * sandbox's network namespace, never through the front door.
 */
#pragma once

/* POSTs body (JSON) to envd's /init on 127.0.0.1:port inside the network namespace netns_fd,
 * authorised with X-Access-Token: token (the one in force). 0 on 204; -EACCES on 401, -EPROTO
 * on another answer, -ETIMEDOUT or -ECONNREFUSED when envd cannot be reached in timeout_ms. */
int envd_init_post(int netns_fd, unsigned port, const char *token, const char *body,
		   unsigned timeout_ms);
