/* The running daemon's parts, shared by the API and the front door. */
#pragma once

#include "config.h"
#include "orchestr/orchestr.h"
#include "store/store.h"

struct hutch_server {
	struct hutch_config *cfg;
	struct store *store;
	struct orchestr *orchestr;
	struct builder *builder; /* template builds */
	struct netpool *netpool;
	struct http_server *api;
	struct frontdoor *frontdoor;
};
