#include "orchestr/orchestr.h"
#include "orchestr/orchestr-internal.h"

#include <fcntl.h>
#include <limits.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "json/jsonx.h"
#include "orchestr/envdinit.h"
#include "orchestr/warmpool.h"
#include "runtime/runtime.h"
#include "sign/signature.h"

#define EVICT_INTERVAL_MS 200
/* Upper-layer disks the jail keeps made ahead: back-to-back creates each take one. */
#define ORCHESTR_DISK_POOL 4
/* A template's ready command: how long a create waits for it, and how often it is run. */
#define READY_TIMEOUT_MS  120000
#define READY_INTERVAL_MS 50
#define READY_RUN_MS	  10000

struct sandbox {
	int refs;
	char id[40];
	char template_id[64];
	char run_dir[PATH_MAX];
	char envd_token[65];
	char pool_token[65]; /* what envd accepts while the sandbox waits in the warm pool */
	char traffic_token[65];
	bool private_traffic; /* network.allowPublicTraffic = false: ports need the traffic token */
	struct runtime_sandbox *rs;
	struct net_slot *slot;
	int uid_index;
	unsigned cpu_count;
	int64_t started_ms;
	uint64_t last_cpu_usec, last_sample_usec;
	pthread_mutex_t lock; /* links, stopping, starting, kill_requested, rs, slot, last_* */
	bool stopping;
	bool starting;	     /* in the registry, not yet running: the front door skips it */
	bool kill_requested; /* killed while starting: create tears it down */
	struct sandbox_link *links;
	struct sandbox *next;
};

struct orchestr {
	struct hutch_config *cfg;
	struct store *st;
	struct netpool *np;
	const struct runtime_ops *rt;
	uint8_t secret[32];
	pthread_mutex_t lock; /* list, count, uid_used */
	struct sandbox *list;
	unsigned count;
	uint8_t *uid_used;
	struct warmpool *pool;
	pthread_t evictor;
	bool evictor_running;
	bool stop;
	pthread_cond_t cond;
};

static int64_t now_ms(void)
{
	return (int64_t)(now_realtime_usec() / 1000u);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void hmac_hex(const uint8_t key[32], const char *label, const char *id, char out[65])
{
	struct hmac_sha256_ctx ctx;
	uint8_t mac[SHA256_DIGEST_SIZE];
	hmac_sha256_set_key(&ctx, 32, key);
	hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
	hmac_sha256_update(&ctx, strlen(id), (const uint8_t *)id);
	hmac_sha256_digest(&ctx, sizeof(mac), mac);
	hex(mac, sizeof(mac), out);
}

void orchestr_envd_token(struct orchestr *o, const char *id, char out[65])
{
	hmac_hex(o->secret, "envd:", id, out);
}

void orchestr_traffic_token(struct orchestr *o, const char *id, char out[65])
{
	hmac_hex(o->secret, "traffic:", id, out);
}

struct sandbox *sandbox_ref(struct sandbox *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_SEQ_CST);
	return s;
}

void sandbox_unref(struct sandbox *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *sandbox_id(const struct sandbox *s)
{
	return s->id;
}

void sandbox_envd_token(struct orchestr *o, const struct sandbox *s, char out[65])
{
	if (s->pool_token[0])
		snprintf(out, 65, "%s", s->pool_token);
	else
		orchestr_envd_token(o, s->id, out);
}

int sandbox_connect(struct sandbox *s, uint16_t port)
{
	pthread_mutex_lock(&s->lock);
	int r =
	    s->stopping || !s->slot ? -ESHUTDOWN : net_connect_in_netns(s->slot->netns_fd, port);
	pthread_mutex_unlock(&s->lock);
	return r;
}

const char *sandbox_traffic_token(const struct sandbox *s)
{
	return s->private_traffic ? s->traffic_token : NULL;
}

int sandbox_netns_fd(const struct sandbox *s)
{
	return s->slot ? s->slot->netns_fd : -1;
}

int sandbox_link_add(struct sandbox *s, struct sandbox_link *l)
{
	pthread_mutex_lock(&s->lock);
	int r = 0;
	if (s->stopping) {
		r = -ESHUTDOWN;
	} else {
		l->prev = NULL;
		l->next = s->links;
		if (s->links)
			s->links->prev = l;
		s->links = l;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void sandbox_link_remove(struct sandbox *s, struct sandbox_link *l)
{
	pthread_mutex_lock(&s->lock);
	if (l->prev)
		l->prev->next = l->next;
	else if (s->links == l)
		s->links = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->next = l->prev = NULL;
	pthread_mutex_unlock(&s->lock);
}

/* ---- ids and slots ---- */

/* One cgroup directory per daemon (its network prefix is unique), so two daemons on a host
 * never see each other's sandboxes. */
static void cgroup_parent_name(const struct orchestr *o, char *buf, size_t size)
{
	snprintf(buf, size, "hutch-%s", o->cfg->net_prefix);
}

static int random_id(char *out, size_t len)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t rnd[64];
	if (len > sizeof(rnd) || getrandom(rnd, len, 0) != (ssize_t)len)
		return -EIO;
	for (size_t i = 0; i < len; i++)
		out[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	out[len] = 0;
	return 0;
}

/* Sandboxes and warm-pool members together (lock held). */
static unsigned uid_slots(const struct orchestr *o)
{
	return o->cfg->max_sandboxes + warmpool_capacity(o->cfg->warm_sandboxes);
}

static int uid_alloc(struct orchestr *o)
{
	for (unsigned i = 0; i < uid_slots(o); i++)
		if (!o->uid_used[i]) {
			o->uid_used[i] = 1;
			return (int)i;
		}
	return -EAGAIN;
}

/* ---- kill ---- */

static void cut_links(struct sandbox *s)
{
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	for (struct sandbox_link *l = s->links; l; l = l->next)
		l->cut(l);
	pthread_mutex_unlock(&s->lock);
}

/* Takes s out of the registry (the registry's reference passes to the caller). A sandbox still
 * starting stays: it is marked for its create to tear down, and a new reference returned. */
static struct sandbox *registry_take(struct orchestr *o, const char *id)
{
	pthread_mutex_lock(&o->lock);
	struct sandbox *found = NULL;
	for (struct sandbox **pp = &o->list; *pp; pp = &(*pp)->next)
		if (streq((*pp)->id, id)) {
			struct sandbox *s = *pp;
			pthread_mutex_lock(&s->lock);
			bool starting = s->starting;
			if (starting)
				s->kill_requested = true; /* its create tears it down */
			pthread_mutex_unlock(&s->lock);
			if (starting) {
				found = sandbox_ref(s);
				break;
			}
			found = s;
			*pp = found->next;
			o->count--;
			break;
		}
	pthread_mutex_unlock(&o->lock);
	return found;
}

/* Tears s down: runtime, network slot, uid range and, when it was assigned, its row. */
static void destroy_sandbox(struct orchestr *o, struct sandbox *s)
{
	cut_links(s);
	/* Taken under the lock: stats and front-door connects use them under it too. */
	pthread_mutex_lock(&s->lock);
	struct runtime_sandbox *rs = TAKE_PTR(s->rs);
	struct net_slot *slot = TAKE_PTR(s->slot);
	pthread_mutex_unlock(&s->lock);
	if (rs) {
		int r = o->rt->destroy(rs);
		if (r < 0)
			log_warn_errno(r, "Failed to destroy sandbox %s cleanly: %m", s->id);
	}
	if (slot)
		netpool_release(o->np, slot);
	pthread_mutex_lock(&o->lock);
	if (s->uid_index >= 0)
		o->uid_used[s->uid_index] = 0;
	pthread_mutex_unlock(&o->lock);
	if (s->pool_token[0]) {
		log_debug("Warm sandbox %s destroyed", s->id);
		return; /* never assigned: no row */
	}
	store_sandbox_delete(o->st, s->id);
	log_info("Sandbox %s stopped", s->id);
}

int orchestr_kill(struct orchestr *o, const char *id)
{
	struct sandbox *s = registry_take(o, id);
	if (!s) {
		/* Not live here: a row left from a crash is removed all the same. */
		return store_sandbox_delete(o->st, id) < 0 ? -ENOENT : 0;
	}
	pthread_mutex_lock(&s->lock);
	bool starting = s->starting;
	pthread_mutex_unlock(&s->lock);
	if (!starting)
		destroy_sandbox(o, s);
	sandbox_unref(s);
	return 0;
}

/* ---- evictor ---- */

/* Sandboxes whose init ended on its own (or whose supervisor is stopping them: a kill that a
 * crashed daemon started) are removed like killed ones, so nothing routes to a dead sandbox. */
static void kill_dead(struct orchestr *o)
{
	char(*dead)[40] = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&o->lock);
	for (struct sandbox *s = o->list; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		bool gone = !s->starting && !s->stopping && s->rs && !o->rt->alive(s->rs);
		pthread_mutex_unlock(&s->lock);
		if (gone && array_reserve((void **)&dead, &cap, n + 1, sizeof(*dead)) == 0)
			memcpy(dead[n++], s->id, sizeof(dead[0]));
	}
	pthread_mutex_unlock(&o->lock);
	for (size_t i = 0; i < n; i++) {
		log_info("Sandbox %s ended on its own", dead[i]);
		orchestr_kill(o, dead[i]);
	}
	free(dead);
}

static void *evictor_main(void *arg)
{
	struct orchestr *o = arg;
	pthread_mutex_lock(&o->lock);
	while (!o->stop) {
		struct timespec ts = timespec_in_ms(CLOCK_MONOTONIC, EVICT_INTERVAL_MS);
		pthread_cond_timedwait(&o->cond, &o->lock, &ts);
		if (o->stop)
			break;
		pthread_mutex_unlock(&o->lock);
		kill_dead(o);
		char **ids = NULL;
		size_t n = 0;
		if (store_sandbox_expired(o->st, now_ms(), &ids, &n) >= 0) {
			for (size_t i = 0; i < n; i++) {
				log_info("Sandbox %s reached its end of life", ids[i]);
				orchestr_kill(o, ids[i]);
				free(ids[i]);
			}
			free(ids);
		}
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* ---- create ---- */

/* envd's settings for s (the /init fields, PROTOCOL §4): token; the template's environment, the
 * request's and E2B's own variables; the template's default user and workdir; with a timestamp
 * for a live /init. */
static json_t *envd_settings(const struct sandbox *s, const char *token, const json_t *config,
			     const json_t *env_vars, bool timestamp)
{
	json_t *env = json_object();
	if (!env)
		return NULL;
	json_t *tenv = json_object_get(config, "envVars");
	if (json_is_object(tenv))
		json_object_update(env, tenv);
	if (env_vars)
		json_object_update(env, (json_t *)env_vars);
	json_object_set_new(env, "E2B_SANDBOX", json_string("true"));
	json_object_set_new(env, "E2B_SANDBOX_ID", json_string(s->id));
	json_object_set_new(env, "E2B_TEMPLATE_ID", json_string(s->template_id));
	const char *user = json_string_value(json_object_get(config, "user"));
	const char *workdir = json_string_value(json_object_get(config, "workdir"));
	json_t *j = json_pack("{s:s, s:o, s:s}", "accessToken", token, "envVars", env,
			      "defaultUser", isempty(user) ? "user" : user);
	if (j && !isempty(workdir))
		json_object_set_new(j, "defaultWorkdir", json_string(workdir));
	if (j && timestamp) {
		char ts[64];
		uint64_t us = now_realtime_usec();
		format_rfc3339(ts, sizeof(ts), (int64_t)(us / 1000000u),
			       (long)(us % 1000000u) * 1000L);
		json_object_set_new(j, "timestamp", json_string(ts));
	}
	return j;
}

static int seterr(struct api_error *err, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int seterr(struct api_error *err, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->status = status;
	return -EPROTO;
}

/* Starts s's runtime with envd configured by ec_text (JSON of envd_settings); upper_dir: a
 * template build's plain upper directory (NULL: a size-limited disk). */
static int start_runtime(struct orchestr *o, struct sandbox *s, const struct template_rec *t,
			 const char *upper_dir, const char *ec_text, struct api_error *err)
{
	size_t nl = json_array_size(t->layers);
	const char **layers = calloc(nl + 1, sizeof(*layers));
	if (!layers)
		return seterr(err, 500, "out of memory");
	for (size_t i = 0; i < nl; i++)
		layers[i] = json_string_value(json_array_get(t->layers, i));
	char resolv[1024] = "";
	char cgroup_parent[32];
	cgroup_parent_name(o, cgroup_parent, sizeof(cgroup_parent));
	net_resolv_conf(resolv, sizeof(resolv));

	struct sandbox_spec spec = {
		.id = s->id,
		.run_dir = s->run_dir,
		.layers = layers,
		.netns_path = s->slot->netns_path,
		.uid_base = o->cfg->uid_base + (uint32_t)s->uid_index * SANDBOX_UID_COUNT,
		.cpu_count = t->cpu_count ? t->cpu_count : o->cfg->default_cpu,
		.memory_mb = t->memory_mb ? t->memory_mb : o->cfg->default_memory_mb,
		.disk_mb = upper_dir	? 0
			   : t->disk_mb ? t->disk_mb
					: o->cfg->default_disk_mb,
		.upper_dir = upper_dir,
		.pids_max = o->cfg->pids_max,
		.pids_reserve = o->cfg->pids_reserve,
		.hostname = s->id,
		.envd_bundle = o->cfg->envd_bundle,
		.init_path = o->cfg->init_path,
		.shim_path = o->cfg->shim_path,
		.envd_config = ec_text,
		.start_timeout_ms = o->cfg->start_timeout_ms,
		.resolv_conf = resolv,
		/* E2B's base gives `user` passwordless sudo, which needs setuid: no_new_privs
		 * stays off; seccomp and the capability bounding set still apply. */
		.allow_setuid = true,
		.cgroup_parent = cgroup_parent,
		.disk_pool = upper_dir ? 0 : ORCHESTR_DISK_POOL,
	};
	int r = o->rt->start(&spec, &s->rs);
	free(layers);
	if (r < 0) {
		log_error_errno(r, "Failed to start sandbox %s: %m", s->id);
		return seterr(err, 500, "failed to start the sandbox: %s", strerror(-r));
	}
	return 0;
}

/* The template a create names: an id, a name (its newest ready build) or name:tag; or, for a
 * build's sandbox, the layers it gives. */
static int resolve_template(struct orchestr *o, const struct create_request *req,
			    struct template_rec *t, struct api_error *err)
{
	if (req->layers) {
		snprintf(t->id, sizeof(t->id), "%s", req->template_id);
		t->layers = json_array();
		for (const char *const *l = req->layers; t->layers && *l; l++)
			json_array_append_new(t->layers, json_string(*l));
		t->config = json_deep_copy(req->config ? req->config : json_object());
		return t->layers && t->config ? 0 : seterr(err, 500, "out of memory");
	}
	char name[192];
	snprintf(name, sizeof(name), "%s", req->template_id);
	char *colon = strchr(name, ':');
	const char *tag = NULL;
	if (colon) {
		*colon = 0;
		tag = colon + 1;
	}
	if (store_template_get(o->st, name, t) < 0)
		return seterr(err, 404, "template '%s' not found", req->template_id);
	if (tag) {
		char build_id[40];
		struct build_rec b = { 0 };
		if (store_tag_get(o->st, t->id, tag, build_id) < 0 ||
		    store_build_get(o->st, build_id, &b) < 0)
			return seterr(err, 404, "template '%s' has no tag '%s'", name, tag);
		json_t *layers = json_object_get(b.data, "layers");
		json_t *config = json_object_get(b.data, "config");
		if (streq(b.status, "ready") && json_is_array(layers) && json_is_object(config)) {
			json_decref(t->layers);
			json_decref(t->config);
			t->layers = json_incref(layers);
			t->config = json_incref(config);
		} else {
			json_decref(t->layers);
			t->layers = json_array();
		}
		build_rec_clear(&b);
	}
	if (json_array_size(t->layers) == 0)
		return seterr(err, 400, "template '%s' has no ready build (status: %s)",
			      req->template_id, t->status[0] ? t->status : "none");
	return 0;
}

/* A template's start command, started in the background, then its ready command polled. */
static int run_start_cmd(struct orchestr *o, struct sandbox *s, const json_t *config,
			 struct api_error *err)
{
	const char *start = json_string_value(json_object_get(config, "startCmd"));
	const char *ready = json_string_value(json_object_get(config, "readyCmd"));
	const char *user = json_string_value(json_object_get(config, "user"));
	const char *workdir = json_string_value(json_object_get(config, "workdir"));
	char msg[512] = "";
	int code = 0;
	if (isempty(user))
		user = "user";
	if (!isempty(start)) {
		struct exec_opts so = { .cmd = start,
					.user = user,
					.cwd = workdir,
					.tag = "start",
					.background = true };
		int r = sandbox_exec(o, s, &so, &code, msg, sizeof(msg));
		if (r < 0)
			return seterr(err, 500, "the template's start command did not start: %s",
				      msg);
	}
	if (isempty(ready))
		return 0;
	uint64_t deadline = now_usec() + READY_TIMEOUT_MS * 1000ull;
	for (;;) {
		struct exec_opts ro = {
			.cmd = ready, .user = user, .cwd = workdir, .timeout_ms = READY_RUN_MS
		};
		int r = sandbox_exec(o, s, &ro, &code, msg, sizeof(msg));
		if (r == 0 && code == 0)
			return 0;
		if (now_usec() > deadline)
			return seterr(err, 500,
				      "the template's ready command did not succeed within %u s "
				      "(last exit code %d%s%s)",
				      READY_TIMEOUT_MS / 1000, code, msg[0] ? ": " : "", msg);
		pthread_mutex_lock(&s->lock);
		bool killed = s->kill_requested;
		pthread_mutex_unlock(&s->lock);
		if (killed)
			return seterr(err, 409, "the sandbox was killed while it started");
		usleep(READY_INTERVAL_MS * 1000);
	}
}

static struct sandbox *sandbox_new(struct orchestr *o, const struct template_rec *t)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->refs = 1;
	s->uid_index = -1;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->template_id, sizeof(s->template_id), "%s", t->id);
	s->cpu_count = t->cpu_count ? t->cpu_count : o->cfg->default_cpu;
	return s;
}

/* What every start needs before the runtime: a uid range, an id and its tokens, RUN_DIR and a
 * network slot. */
static int sandbox_prepare(struct orchestr *o, struct sandbox *s, bool allow_internet,
			   struct api_error *err)
{
	pthread_mutex_lock(&o->lock);
	s->uid_index = uid_alloc(o);
	pthread_mutex_unlock(&o->lock);
	if (s->uid_index < 0)
		return seterr(err, 429, "no free sandbox slot");
	if (random_id(s->id, 20) < 0)
		return seterr(err, 500, "no randomness");
	orchestr_envd_token(o, s->id, s->envd_token);
	orchestr_traffic_token(o, s->id, s->traffic_token);
	snprintf(s->run_dir, sizeof(s->run_dir), "%s/sandboxes/%s", o->cfg->data_dir, s->id);
	if (mkdir(s->run_dir, 0700) < 0) {
		int r = seterr(err, 500, "cannot create %s: %s", s->run_dir, strerror(errno));
		s->run_dir[0] = 0;
		return r;
	}
	int r = netpool_acquire(o->np, allow_internet, &s->slot);
	if (r < 0) {
		s->slot = NULL;
		return seterr(err, 503, "no network slot available: %s", strerror(-r));
	}
	return 0;
}

/* Undoes a start that failed or was given up, wherever it stopped, and drops the caller's
 * reference. s must be out of the registry. */
static void sandbox_abandon(struct orchestr *o, struct sandbox *s)
{
	destroy_sandbox(o, s); /* releases slot, uid, row */
	if (s->run_dir[0]) {
		/* A start that failed half-way: the runtime finds and removes what it made (a
		 * shim that is still there, its cgroup, RUN_DIR). Its log went to ours already. */
		struct runtime_sandbox *rs = NULL;
		if (o->rt->attach(s->run_dir, &rs) >= 0)
			o->rt->destroy(rs);
		else
			rmdir(s->run_dir);
	}
	sandbox_unref(s);
}

/* The row of s as created by req (state STARTING, ends `timeout` s from `now`). */
static void sandbox_record(struct orchestr *o, const struct sandbox *s,
			   const struct template_rec *t, const struct create_request *req,
			   int64_t now, unsigned timeout, struct sandbox_rec *rec)
{
	*rec = (struct sandbox_rec){
		.state = SANDBOX_STARTING,
		.started_ms = now,
		.end_ms = now + (int64_t)timeout * 1000,
		.cpu_count = s->cpu_count,
		.memory_mb = t->memory_mb ? t->memory_mb : o->cfg->default_memory_mb,
		.disk_mb = t->disk_mb ? t->disk_mb : o->cfg->default_disk_mb,
		.metadata = (json_t *)req->metadata,
		.env_vars = (json_t *)req->env_vars,
		.extra = (json_t *)req->extra,
		.allow_internet = req->allow_internet,
		.auto_pause = req->auto_pause,
		.net_slot = (int)s->slot->index,
		.uid_base = o->cfg->uid_base + (uint32_t)s->uid_index * SANDBOX_UID_COUNT,
	};
	snprintf(rec->id, sizeof(rec->id), "%s", s->id);
	snprintf(rec->template_id, sizeof(rec->template_id), "%s", t->id);
	snprintf(rec->alias, sizeof(rec->alias), "%s", t->alias);
	snprintf(rec->key_id, sizeof(rec->key_id), "%s", req->key_id ? req->key_id : "");
	snprintf(rec->envd_version, sizeof(rec->envd_version), "%s", ENVD_PROTOCOL_VERSION);
}

static void registry_add(struct orchestr *o, struct sandbox *s)
{
	pthread_mutex_lock(&o->lock);
	s->next = o->list;
	o->list = sandbox_ref(s);
	pthread_mutex_unlock(&o->lock);
}

/* ---- the warm pool's members (warmpool.c keeps them; these start and destroy them) ---- */

/* A sandbox started in full but unassigned: no row, not in the registry, and its envd accepts
 * only a random token that never leaves the daemon. No internet until a create asks for it. */
static int warm_start(void *ctx, const struct template_rec *t, void **member)
{
	struct orchestr *o = ctx;
	struct api_error err;
	struct sandbox *s = sandbox_new(o, t);
	if (!s)
		return -ENOMEM;
	uint8_t rnd[32];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		sandbox_unref(s);
		return -EIO;
	}
	hex(rnd, sizeof(rnd), s->pool_token);
	explicit_bzero(rnd, sizeof(rnd));
	int r = sandbox_prepare(o, s, false, &err);
	if (r >= 0) {
		json_t *ec = envd_settings(s, s->pool_token, t->config, NULL, false);
		char *text = ec ? json_dumps(ec, JSON_COMPACT) : NULL;
		json_decref(ec);
		r = text ? start_runtime(o, s, t, NULL, text, &err) : -ENOMEM;
		free(text);
	}
	/* The template's start command runs before a create takes the sandbox, as in E2B (where it
	 * ran before the snapshot): without the create's variables, ready when handed out. */
	if (r >= 0)
		r = run_start_cmd(o, s, t->config, &err);
	if (r < 0) {
		if (r == -EPROTO)
			log_debug("Warm sandbox not started: %s", err.message);
		sandbox_abandon(o, s);
		return r == -EPROTO ? -EIO : r;
	}
	*member = s;
	return 0;
}

static void warm_destroy(void *ctx, void *member)
{
	struct orchestr *o = ctx;
	struct sandbox *s = member;
	destroy_sandbox(o, s);
	sandbox_unref(s);
}

static const struct warmpool_ops warm_ops = {
	.start = warm_start,
	.destroy = warm_destroy,
};

/* Hands warm sandbox s what differs per create: its envd's token, environment and default user
 * (through /init), internet access, traffic privacy; then records it and makes it routable.
 * -ESTALE when s cannot be used (envd gone or refusing): the caller abandons it. */
static int assign(struct orchestr *o, struct sandbox *s, const struct template_rec *t,
		  const struct create_request *req, unsigned timeout, struct api_error *err)
{
	uint64_t t0 = now_usec();
	if (!o->rt->alive(s->rs)) {
		log_warn("Warm sandbox %s died while it waited", s->id);
		return -ESTALE;
	}
	int r = req->allow_internet ? netpool_set_internet(o->np, s->slot, true) : 0;
	if (r < 0)
		return seterr(err, 503, "cannot open internet access: %s", strerror(-r));
	uint64_t t1 = now_usec();
	json_t *public_traffic =
	    json_object_get(json_object_get(req->extra, "network"), "allowPublicTraffic");
	s->private_traffic = json_is_false(public_traffic);
	json_t *init = envd_settings(s, s->envd_token, t->config, req->env_vars, true);
	char *body = init ? json_dumps(init, JSON_COMPACT) : NULL;
	json_decref(init);
	if (!body)
		return seterr(err, 500, "out of memory");
	r = envd_init_post(s->slot->netns_fd, ORCHESTR_ENVD_PORT, s->pool_token, body,
			   o->cfg->start_timeout_ms);
	explicit_bzero(body, strlen(body));
	free(body);
	if (r < 0) {
		log_warn_errno(r, "Warm sandbox %s did not take its /init: %m", s->id);
		return -ESTALE;
	}
	/* From here on it is an assigned sandbox: destroying it deletes its row. */
	explicit_bzero(s->pool_token, sizeof(s->pool_token));
	uint64_t t2 = now_usec();

	struct sandbox_rec rec;
	int64_t now = now_ms();
	sandbox_record(o, s, t, req, now, timeout, &rec);
	rec.state = SANDBOX_RUNNING; /* it runs already: one commit */
	if (store_sandbox_insert(o->st, &rec) < 0)
		return seterr(err, 500, "cannot record the sandbox");
	s->started_ms = now;
	registry_add(o, s);
	log_info("Sandbox %s started from template %s (warm: net %.1f ms, init %.1f ms, record "
		 "%.1f ms)",
		 s->id, s->template_id, (double)(t1 - t0) / 1000, (double)(t2 - t1) / 1000,
		 (double)(now_usec() - t2) / 1000);
	return 0;
}

/* Starts a sandbox for req from nothing (the warm pool had none). */
static int create_cold(struct orchestr *o, const struct template_rec *t,
		       const struct create_request *req, unsigned timeout, struct sandbox **out,
		       struct api_error *err)
{
	struct sandbox *s = sandbox_new(o, t);
	if (!s)
		return seterr(err, 500, "out of memory");
	json_t *public_traffic =
	    json_object_get(json_object_get(req->extra, "network"), "allowPublicTraffic");
	s->private_traffic = json_is_false(public_traffic);
	uint64_t t0 = now_usec();
	int r = sandbox_prepare(o, s, req->allow_internet, err);
	if (r < 0)
		goto fail;
	uint64_t t1 = now_usec();
	/* In the registry from now on, so a kill that comes while it starts finds it. */
	s->starting = true;
	registry_add(o, s);
	uint32_t uid_base = o->cfg->uid_base + (uint32_t)s->uid_index * SANDBOX_UID_COUNT;
	if (req->before_start && (r = req->before_start(req->userdata, uid_base)) < 0) {
		r = seterr(err, 500, "cannot prepare the sandbox: %s", strerror(-r));
		goto fail;
	}
	json_t *ec = envd_settings(s, s->envd_token, t->config, req->env_vars, false);
	char *ec_text = ec ? json_dumps(ec, JSON_COMPACT) : NULL;
	json_decref(ec);
	r = ec_text ? start_runtime(o, s, t, req->upper_dir, ec_text, err)
		    : seterr(err, 500, "out of memory");
	free(ec_text);
	if (r < 0)
		goto fail;
	/* A build's sandbox runs steps, not the template's start command. */
	if (!req->layers && (r = run_start_cmd(o, s, t->config, err)) < 0)
		goto fail;
	uint64_t t2 = now_usec();
	/* Recorded once it runs: one commit, and the timeout counts from when it is usable. A
	 * crash before this leaves a run directory with no row, which the next daemon's recovery
	 * destroys (recover.c), with its network slot. */
	struct sandbox_rec rec;
	int64_t now = now_ms();
	sandbox_record(o, s, t, req, now, timeout, &rec);
	rec.state = SANDBOX_RUNNING;
	if (store_sandbox_insert(o->st, &rec) < 0) {
		r = seterr(err, 500, "cannot record the sandbox");
		goto fail;
	}
	s->started_ms = now;

	pthread_mutex_lock(&s->lock);
	bool killed = s->kill_requested;
	if (!killed)
		s->starting = false;
	pthread_mutex_unlock(&s->lock);
	if (killed) {
		r = seterr(err, 409, "the sandbox was killed while it started");
		goto fail;
	}
	log_info(
	    "Sandbox %s started from template %s (net %.1f ms, runtime %.1f ms, record %.1f ms)",
	    s->id, s->template_id, (double)(t1 - t0) / 1000, (double)(t2 - t1) / 1000,
	    (double)(now_usec() - t2) / 1000);
	*out = s;
	return 0;

fail:
	pthread_mutex_lock(&o->lock);
	for (struct sandbox **pp = &o->list; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			sandbox_unref(s); /* the registry's reference */
			break;
		}
	pthread_mutex_unlock(&o->lock);
	sandbox_abandon(o, s);
	return r;
}

int orchestr_create(struct orchestr *o, const struct create_request *req, struct sandbox_rec *out,
		    struct api_error *err)
{
	struct template_rec t = { 0 };
	int r = resolve_template(o, req, &t, err);
	if (r < 0) {
		template_rec_clear(&t);
		return r;
	}
	unsigned timeout = req->timeout_s ? req->timeout_s : o->cfg->default_timeout_s;
	if (timeout > o->cfg->max_timeout_s)
		timeout = o->cfg->max_timeout_s;
	/* What envd would refuse (PROTOCOL §4), refused here before any sandbox is spent on it. */
	const char *name;
	json_t *value;
	json_object_foreach ((json_t *)req->env_vars, name, value)
		if (!*name || strchr(name, '=')) {
			template_rec_clear(&t);
			return seterr(err, 400,
				      "envVars names must be non-empty and contain no '='");
		}

	pthread_mutex_lock(&o->lock);
	if (o->count >= o->cfg->max_sandboxes)
		r = seterr(err, 429, "the maximum number of concurrent sandboxes (%u) is reached",
			   o->cfg->max_sandboxes);
	else
		o->count++; /* reserved; the sandbox joins the list once it runs */
	pthread_mutex_unlock(&o->lock);
	if (r < 0) {
		template_rec_clear(&t);
		return r;
	}

	/* The pool holds sandboxes of a template's newest build: a build's own sandboxes and
	 * creates of a tagged build start cold. */
	struct sandbox *s = NULL;
	if (!req->layers && !strchr(req->template_id, ':'))
		s = warmpool_take(o->pool, &t);
	r = -ESTALE;
	if (s) {
		r = assign(o, s, &t, req, timeout, err);
		if (r < 0)
			sandbox_abandon(o, s);
	}
	if (r == -ESTALE)
		r = create_cold(o, &t, req, timeout, &s, err);
	template_rec_clear(&t);
	if (r < 0) {
		pthread_mutex_lock(&o->lock);
		o->count--;
		pthread_mutex_unlock(&o->lock);
		return r;
	}
	char id[sizeof(s->id)];
	snprintf(id, sizeof(id), "%s", s->id);
	sandbox_unref(s); /* the registry holds it */
	return store_sandbox_get(o->st, id, out);
}

int orchestr_set_timeout(struct orchestr *o, const char *id, unsigned timeout_s, bool only_extend,
			 int64_t *end_ms)
{
	struct sandbox *s = orchestr_get(o, id);
	if (!s)
		return -ENOENT;
	sandbox_unref(s);
	if (timeout_s > o->cfg->max_timeout_s)
		timeout_s = o->cfg->max_timeout_s;
	*end_ms = now_ms() + (int64_t)timeout_s * 1000;
	int r = store_sandbox_set_end(o->st, id, end_ms, only_extend);
	pthread_cond_broadcast(&o->cond); /* a shorter end may be due now */
	return r;
}

struct sandbox *orchestr_get(struct orchestr *o, const char *id)
{
	struct sandbox *found = NULL;
	pthread_mutex_lock(&o->lock);
	for (struct sandbox *s = o->list; s; s = s->next)
		if (streq(s->id, id)) {
			pthread_mutex_lock(&s->lock);
			if (!s->stopping && !s->starting)
				found = sandbox_ref(s);
			pthread_mutex_unlock(&s->lock);
			break;
		}
	pthread_mutex_unlock(&o->lock);
	return found;
}

struct sandbox *orchestr_find_by_signature(struct orchestr *o, const char *path, const char *op,
					   const char *user, const char *expiration,
					   const char *signature);

int orchestr_stats(struct orchestr *o, const char *id, json_t **metric)
{
	struct sandbox *s = orchestr_get(o, id);
	if (!s)
		return -ENOENT;
	struct sandbox_stats st = { 0 };
	pthread_mutex_lock(&s->lock);
	int r = s->stopping || !s->rs ? -ENOENT : o->rt->stats(s->rs, &st);
	if (r < 0) {
		pthread_mutex_unlock(&s->lock);
		sandbox_unref(s);
		return r;
	}
	uint64_t now = now_usec();
	uint64_t dt = s->last_sample_usec ? now - s->last_sample_usec
					  : (uint64_t)(now_ms() - s->started_ms) * 1000u;
	uint64_t dcpu = st.cpu_usage_usec - MIN(st.cpu_usage_usec, s->last_cpu_usec);
	s->last_sample_usec = now;
	s->last_cpu_usec = st.cpu_usage_usec;
	pthread_mutex_unlock(&s->lock);
	unsigned cpus = st.cpu_count ? st.cpu_count : s->cpu_count;
	double pct = dt && cpus ? 100.0 * (double)dcpu / (double)dt / cpus : 0;
	if (pct > 100)
		pct = 100;
	int64_t t = now_ms();
	char ts[64];
	format_rfc3339(ts, sizeof(ts), t / 1000, (long)(t % 1000) * 1000000L);
	*metric =
	    json_pack("{s:s, s:I, s:i, s:f, s:I, s:I, s:I, s:I, s:I}", "timestamp", ts,
		      "timestampUnix", (json_int_t)(t / 1000), "cpuCount", (int)cpus, "cpuUsedPct",
		      pct, "memUsed", (json_int_t)st.mem_used, "memTotal", (json_int_t)st.mem_total,
		      "memCache", (json_int_t)st.mem_cache, "diskUsed", (json_int_t)st.disk_used,
		      "diskTotal", (json_int_t)st.disk_total);
	sandbox_unref(s);
	return *metric ? 0 : -ENOMEM;
}

struct sandbox *orchestr_find_by_signature(struct orchestr *o, const char *path, const char *op,
					   const char *user, const char *expiration,
					   const char *signature)
{
	if (isempty(signature))
		return NULL;
	struct sandbox *found = NULL;
	pthread_mutex_lock(&o->lock);
	for (struct sandbox *s = o->list; s && !found; s = s->next) {
		_cleanup_free_ char *want =
		    signature_compute(path, op, user, s->envd_token, expiration);
		if (want && strlen(want) == strlen(signature) &&
		    memeql_sec(want, signature, strlen(want))) {
			pthread_mutex_lock(&s->lock);
			if (!s->stopping)
				found = sandbox_ref(s);
			pthread_mutex_unlock(&s->lock);
		}
	}
	pthread_mutex_unlock(&o->lock);
	return found;
}

int orchestr_logs(struct orchestr *o, const char *id, json_t **logs)
{
	struct sandbox *s = orchestr_get(o, id);
	if (!s)
		return -ENOENT;
	char path[PATH_MAX + 16];
	/* The shim collects init's and envd's output (bounded) in shim.log. */
	snprintf(path, sizeof(path), "%s/shim.log", s->run_dir);
	sandbox_unref(s);
	json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[4096];
	/* The log is bounded by the runtime; keep the last 1000 lines. */
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		int64_t ms = 0;
		json_t *j = json_loads(line, 0, NULL);
		const char *ts = json_string_value(json_object_get(j, "ts"));
		int64_t sec;
		long nsec;
		if (ts && parse_rfc3339(ts, &sec, &nsec) == 0)
			ms = sec * 1000 + nsec / 1000000;
		else
			ms = now_ms(); /* a line with no time of its own */
		json_decref(j);
		char when[64];
		format_rfc3339(when, sizeof(when), ms / 1000, (long)(ms % 1000) * 1000000L);
		json_array_append_new(arr, json_pack("{s:s, s:o}", "timestamp", when, "line",
						     jsonx_string_lossy(line)));
		if (json_array_size(arr) > 1000)
			json_array_remove(arr, 0);
	}
	*logs = arr;
	return 0;
}

int orchestr_warm_template(struct orchestr *o, const char *id)
{
	struct template_rec t = { 0 };
	int r = store_template_get(o->st, id, &t);
	if (r >= 0 && json_array_size(t.layers) == 0)
		r = -ENOENT;
	if (r >= 0)
		warmpool_want(o->pool, &t);
	template_rec_clear(&t);
	return r;
}

int orchestr_adopt(struct orchestr *o, const struct sandbox_rec *rec, struct runtime_sandbox *rs,
		   struct net_slot *slot, unsigned uid_index)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->refs = 1;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->id, sizeof(s->id), "%s", rec->id);
	snprintf(s->template_id, sizeof(s->template_id), "%s", rec->template_id);
	snprintf(s->run_dir, sizeof(s->run_dir), "%s/sandboxes/%s", o->cfg->data_dir, s->id);
	orchestr_envd_token(o, s->id, s->envd_token);
	orchestr_traffic_token(o, s->id, s->traffic_token);
	json_t *public_traffic =
	    json_object_get(json_object_get(rec->extra, "network"), "allowPublicTraffic");
	s->private_traffic = json_is_false(public_traffic);
	s->cpu_count = rec->cpu_count;
	s->started_ms = rec->started_ms;
	pthread_mutex_lock(&o->lock);
	int r = 0;
	if (uid_index >= o->cfg->max_sandboxes || o->uid_used[uid_index] ||
	    o->count >= o->cfg->max_sandboxes) {
		r = -EBUSY;
	} else {
		o->uid_used[uid_index] = 1;
		s->uid_index = (int)uid_index;
		s->rs = rs;
		s->slot = slot;
		s->next = o->list;
		o->list = s;
		o->count++;
	}
	pthread_mutex_unlock(&o->lock);
	if (r < 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
	return r;
}

int orchestr_new(struct hutch_config *cfg, struct store *st, struct netpool *np,
		 struct orchestr **out)
{
	struct orchestr *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->cfg = cfg;
	o->st = st;
	o->np = np;
	o->rt = &jail_runtime_ops;
	o->uid_used = calloc(uid_slots(o), 1);
	pthread_mutex_init(&o->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
	int r = o->uid_used ? store_secret(st, "sandbox-tokens", o->secret) : -ENOMEM;
	if (r < 0) {
		free(o->uid_used);
		free(o);
		return r;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/sandboxes", cfg->data_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		free(o->uid_used);
		free(o);
		return log_error_errno(r, "Failed to create %s: %m", dir);
	}
	char cgroup_parent[32];
	cgroup_parent_name(o, cgroup_parent, sizeof(cgroup_parent));
	struct recover_env env = {
		.cfg = cfg, .st = st, .np = np, .rt = o->rt, .cgroup_parent = cgroup_parent
	};
	orchestr_recover(o, &env);
	r = warmpool_new(cfg->warm_sandboxes, st, &warm_ops, o, &o->pool);
	if (r < 0) {
		free(o->uid_used);
		free(o);
		return r;
	}
	r = -pthread_create(&o->evictor, NULL, evictor_main, o);
	if (r < 0) {
		o->pool = warmpool_free(o->pool);
		free(o->uid_used);
		free(o);
		return r;
	}
	o->evictor_running = true;
	*out = o;
	return 0;
}

/* The daemon's own cgroup directories (cgroup v1: one per hierarchy; v2: one), empty once
 * every sandbox is gone. Best effort: a busy one stays. */
static void remove_cgroup_parents(struct orchestr *o)
{
	char name[32];
	cgroup_parent_name(o, name, sizeof(name));
	_cleanup_closedir_ DIR *d = opendir("/sys/fs/cgroup");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", de->d_name, name);
		rmdir(path);
	}
	char v2[PATH_MAX];
	snprintf(v2, sizeof(v2), "/sys/fs/cgroup/%s", name);
	rmdir(v2);
}

struct orchestr *orchestr_free(struct orchestr *o, bool kill_all)
{
	if (!o)
		return NULL;
	pthread_mutex_lock(&o->lock);
	o->stop = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	if (o->evictor_running)
		pthread_join(o->evictor, NULL);
	/* Unassigned sandboxes have no row for a next daemon to find: always destroyed. */
	o->pool = warmpool_free(o->pool);
	for (;;) {
		pthread_mutex_lock(&o->lock);
		struct sandbox *s = o->list;
		if (s) {
			o->list = s->next;
			o->count--;
		}
		pthread_mutex_unlock(&o->lock);
		if (!s)
			break;
		if (kill_all) {
			destroy_sandbox(o, s);
		} else {
			cut_links(s);
			o->rt->release(s->rs);
		}
		sandbox_unref(s);
	}
	if (kill_all)
		remove_cgroup_parents(o);
	o->rt->shutdown();
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	free(o->uid_used);
	free(o);
	return NULL;
}
