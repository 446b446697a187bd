/*
 * The sandbox front door (--sandbox-listen): every envd/port request, routed per request by
 * E2b-Sandbox-Id + E2b-Sandbox-Port or a Host of <port>-<sandboxId>.<domain>, relayed with
 * bodies streamed both ways to a socket opened inside the sandbox's network namespace.
 * Unknown, stopped or expired sandboxes get 502 {"sandboxId","message","code":502}.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include "server.h"

#define ENVD_PORT 49983

struct frontdoor;

int frontdoor_start(struct hutch_server *srv, struct frontdoor **out);
struct frontdoor *frontdoor_stop(struct frontdoor *f);

/* ---- routing (route.c), pure so it can be fuzzed ---- */
struct route_target {
	char sandbox_id[64];
	uint16_t port;
};
/*
 * Where a request goes: the Host "<port>-<id>.<rest>" wins when it has that shape; otherwise the
 * E2b-Sandbox-Id / E2b-Sandbox-Port headers (port defaults to 49983). Returns 0, -ENOENT when
 * neither names a sandbox, -EINVAL for malformed values (bad port, id with odd characters).
 */
int route_parse(const char *host, const char *sandbox_id_header, const char *port_header,
		struct route_target *out);
/* true for hop-by-hop headers a proxy must not forward (Connection, Transfer-Encoding...). */
bool route_hop_by_hop(const char *name);
