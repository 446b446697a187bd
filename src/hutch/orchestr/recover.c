/*
 * Recovery at start with a data dir an earlier daemon used (it crashed, was killed, or stopped).
 *
 * Sandboxes outlive the daemon: each has its own supervisor in its own session, and its RUN_DIR,
 * network slot and row describe it completely. A sandbox is taken back when its row says
 * running, its time is not up, its uid range and slot fit this daemon's configuration, its
 * supervisor and init are alive (and not stopping), and its envd answers GET /health inside its
 * network namespace. It keeps its id, tokens (derived from the data dir's secret), slot, cgroup
 * and end time, so clients go on as before. Anything else is destroyed and its row deleted: a
 * create in flight at the crash ("starting"), a kill in flight, a sandbox whose envd died. Then
 * what no row accounts for goes: supervisors, RUN_DIRs, cgroups, network slots.
 */
#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include "net/netcurl.h"
#include "orchestr/orchestr-internal.h"
#include "common/log.h"
#include "common/util.h"

#define ENVD_PORT	  49983
#define HEALTH_TIMEOUT_MS 3000
#define RECOVER_PAGE	  1000
#define RECOVER_WORKERS	  7 /* besides the calling thread */

static int64_t now_ms(void)
{
	return (int64_t)(now_realtime_usec() / 1000u);
}

static int health_connect(void *userdata)
{
	return net_connect_in_netns(*(int *)userdata, ENVD_PORT);
}

/* Whether envd inside the namespace answers its health check. */
static bool envd_answers(int netns_fd)
{
	CURL *e = curl_easy_init();
	if (!e)
		return false;
	curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:49983/health");
	struct netcurl_socket sock = { .connect = health_connect, .userdata = &netns_fd };
	netcurl_use_socket(e, &sock);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, netcurl_discard);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)HEALTH_TIMEOUT_MS);
	long code = 0;
	CURLcode c = curl_easy_perform(e);
	if (c == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	return c == CURLE_OK && code >= 200 && code < 300;
}

/* Tries to take one sandbox back; on failure says why and leaves what it found in rs/slot. */
static const char *try_attach(const struct recover_env *env, const struct sandbox_rec *rec,
			      const char *run_dir, struct runtime_sandbox **rs,
			      struct net_slot **slot, unsigned *uid_index)
{
	const struct hutch_config *cfg = env->cfg;
	if (rec->state != SANDBOX_RUNNING)
		return rec->state == SANDBOX_STARTING ? "it was still starting"
						      : "it was not running";
	if (rec->end_ms <= now_ms())
		return "its time is up";
	if (rec->uid_base < cfg->uid_base || (rec->uid_base - cfg->uid_base) % SANDBOX_UID_COUNT ||
	    (rec->uid_base - cfg->uid_base) / SANDBOX_UID_COUNT >= cfg->max_sandboxes)
		return "its uid range does not fit this configuration";
	*uid_index = (rec->uid_base - cfg->uid_base) / SANDBOX_UID_COUNT;
	if (env->rt->attach(run_dir, rs) < 0) {
		*rs = NULL;
		return "its run directory is unusable";
	}
	if (!env->rt->alive(*rs))
		return "its supervisor or init is gone or stopping";
	if (rec->net_slot < 0 || netpool_adopt(env->np, (unsigned)rec->net_slot, slot) < 0) {
		*slot = NULL;
		return "its network slot is gone";
	}
	if (!envd_answers((*slot)->netns_fd))
		return "its envd does not answer";
	return NULL;
}

/* One page of rows, shared by the workers: each takes the next row; keep[] gets the ids of the
 * sandboxes taken back. */
struct recover_page {
	struct orchestr *o;
	const struct recover_env *env;
	struct sandbox_rec *recs;
	size_t n, next;
	char (*keep)[40];
	size_t n_keep;
	pthread_mutex_t lock;
};

/* Takes back or destroys one sandbox; its id goes to keep[] when taken back. */
static void recover_one(struct recover_page *pg, const struct sandbox_rec *rec)
{
	struct orchestr *o = pg->o;
	const struct recover_env *env = pg->env;
	char run_dir[PATH_MAX];
	snprintf(run_dir, sizeof(run_dir), "%s/sandboxes/%s", env->cfg->data_dir, rec->id);
	struct runtime_sandbox *rs = NULL;
	struct net_slot *slot = NULL;
	unsigned uid_index = 0;
	const char *why = try_attach(env, rec, run_dir, &rs, &slot, &uid_index);
	if (!why) {
		int r = orchestr_adopt(o, rec, rs, slot, uid_index);
		if (r == 0) {
			pthread_mutex_lock(&pg->lock);
			memcpy(pg->keep[pg->n_keep++], rec->id, sizeof(pg->keep[0]));
			pthread_mutex_unlock(&pg->lock);
			log_info("Sandbox %s taken back (ends in %lld s)", rec->id,
				 (long long)((rec->end_ms - now_ms()) / 1000));
			return;
		}
		why = "its uid range is taken";
	}
	log_info("Sandbox %s left by a previous run is removed: %s", rec->id, why);
	if (rs) {
		int r = env->rt->destroy(rs);
		if (r < 0)
			log_warn_errno(r, "Failed to destroy sandbox %s cleanly: %m", rec->id);
	}
	if (!slot && rec->net_slot >= 0 &&
	    netpool_adopt(env->np, (unsigned)rec->net_slot, &slot) < 0)
		slot = NULL; /* gone, or netpool_reclaim removes what is left of it */
	if (slot)
		netpool_release(env->np, slot);
	store_sandbox_delete(env->st, rec->id);
}

static void *recover_worker(void *userdata)
{
	struct recover_page *pg = userdata;
	for (;;) {
		pthread_mutex_lock(&pg->lock);
		size_t i = pg->next++;
		pthread_mutex_unlock(&pg->lock);
		if (i >= pg->n)
			return NULL;
		recover_one(pg, &pg->recs[i]);
	}
}

/* The rows of a page, RECOVER_WORKERS at a time: an envd that does not answer costs its
 * HEALTH_TIMEOUT_MS once, not once per sandbox behind it. */
static void recover_page(struct recover_page *pg)
{
	pthread_t th[RECOVER_WORKERS];
	size_t started = 0;
	for (; started < RECOVER_WORKERS && started < pg->n; started++)
		if (pthread_create(&th[started], NULL, recover_worker, pg) != 0)
			break;
	recover_worker(pg); /* this thread too; alone when no worker could start */
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}

void orchestr_recover(struct orchestr *o, const struct recover_env *env)
{
	char(*keep)[40] = NULL;
	size_t n_keep = 0, cap = 0;
	char *cursor = NULL;
	bool complete = false;
	do {
		struct sandbox_filter f = { .limit = RECOVER_PAGE, .cursor = cursor };
		struct sandbox_rec *recs = NULL;
		size_t n = 0;
		char *next = NULL;
		int r = store_sandbox_list(env->st, &f, &recs, &n, &next);
		free(cursor);
		cursor = next;
		if (r < 0) {
			log_error_errno(r, "Failed to list the sandboxes of a previous run: %m");
			cursor = (free(cursor), NULL);
			break;
		}
		if (array_reserve((void **)&keep, &cap, n_keep + n + 1, sizeof(*keep)) < 0) {
			for (size_t i = 0; i < n; i++)
				sandbox_rec_clear(&recs[i]);
			free(recs);
			cursor = (free(cursor), NULL);
			break;
		}
		/* Deleting rows does not disturb paging: the cursor is a key. */
		struct recover_page pg = {
			.o = o,
			.env = env,
			.recs = recs,
			.n = n,
			.keep = keep,
			.n_keep = n_keep,
		};
		pthread_mutex_init(&pg.lock, NULL);
		recover_page(&pg);
		pthread_mutex_destroy(&pg.lock);
		n_keep = pg.n_keep;
		for (size_t i = 0; i < n; i++)
			sandbox_rec_clear(&recs[i]);
		free(recs);
		complete = !cursor;
	} while (cursor);
	if (!complete) {
		/* Without every row, the sweep would remove sandboxes that have one. */
		log_error("The leftovers of a previous run stay until the next start");
		free(keep);
		return;
	}

	/* The rest: supervisors of creates in flight, RUN_DIRs without a row, cgroups, slots. */
	char run_root[PATH_MAX];
	snprintf(run_root, sizeof(run_root), "%s/sandboxes", env->cfg->data_dir);
	const char **ids = calloc(n_keep + 1, sizeof(*ids));
	if (!ids && n_keep) {
		/* Sweeping without the list would remove the sandboxes just taken back. */
		log_error(
		    "Out of memory: the leftovers of a previous run stay until the next start");
		free(keep);
		return;
	}
	for (size_t i = 0; i < n_keep; i++)
		ids[i] = keep[i];
	int r = env->rt->sweep(run_root, env->cgroup_parent, ids, n_keep);
	if (r > 0)
		log_info("Removed %d sandboxes a previous run left without a record", r);
	r = netpool_reclaim(env->np);
	if (r < 0)
		log_warn_errno(r, "Failed to remove every network slot of a previous run: %m");
	if (n_keep)
		log_info("Took back %zu sandboxes of a previous run", n_keep);
	free(ids);
	free(keep);
}
