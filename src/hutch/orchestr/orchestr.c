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
	pthread_t evictor;
	bool evictor_running;
	bool stop;
	pthread_cond_t cond;
};

static int64_t now_ms(void)
{
	return (int64_t)(now_realtime_usec() / 1000u);
}

static void hmac_hex(const uint8_t key[32], const char *label, const char *id, char out[65])
{
	struct hmac_sha256_ctx ctx;
	uint8_t mac[SHA256_DIGEST_SIZE];
	hmac_sha256_set_key(&ctx, 32, key);
	hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
	hmac_sha256_update(&ctx, strlen(id), (const uint8_t *)id);
	hmac_sha256_digest(&ctx, sizeof(mac), mac);
	for (size_t i = 0; i < sizeof(mac); i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
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

static int uid_alloc(struct orchestr *o)
{
	for (unsigned i = 0; i < o->cfg->max_sandboxes; i++)
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

static void *evictor_main(void *arg)
{
	struct orchestr *o = arg;
	pthread_mutex_lock(&o->lock);
	while (!o->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += EVICT_INTERVAL_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&o->cond, &o->lock, &ts);
		if (o->stop)
			break;
		pthread_mutex_unlock(&o->lock);
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

static json_t *envd_config(struct orchestr *o, const struct sandbox *s,
			   const struct create_request *req, const json_t *config)
{
	json_t *env = json_object();
	if (!env)
		return NULL;
	json_t *tenv = json_object_get(config, "envVars");
	if (json_is_object(tenv))
		json_object_update(env, tenv);
	if (req->env_vars)
		json_object_update(env, (json_t *)req->env_vars);
	json_object_set_new(env, "E2B_SANDBOX", json_string("true"));
	json_object_set_new(env, "E2B_SANDBOX_ID", json_string(s->id));
	json_object_set_new(env, "E2B_TEMPLATE_ID", json_string(s->template_id));
	const char *user = json_string_value(json_object_get(config, "user"));
	const char *workdir = json_string_value(json_object_get(config, "workdir"));
	json_t *ec = json_pack("{s:s, s:o, s:s}", "accessToken", s->envd_token, "envVars", env,
			       "defaultUser", isempty(user) ? "user" : user);
	if (ec && !isempty(workdir))
		json_object_set_new(ec, "defaultWorkdir", json_string(workdir));
	return ec;
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

static int start_runtime(struct orchestr *o, struct sandbox *s, const struct template_rec *t,
			 const struct create_request *req, struct api_error *err)
{
	size_t nl = json_array_size(t->layers);
	const char **layers = calloc(nl + 1, sizeof(*layers));
	if (!layers)
		return seterr(err, 500, "out of memory");
	for (size_t i = 0; i < nl; i++)
		layers[i] = json_string_value(json_array_get(t->layers, i));
	json_t *ec = envd_config(o, s, req, t->config);
	char *ec_text = ec ? json_dumps(ec, JSON_COMPACT) : NULL;
	json_decref(ec);
	char resolv[1024] = "";
	char cgroup_parent[32];
	/* One cgroup directory per daemon (its network prefix is unique), so two daemons on a
	 * host never see each other's sandboxes. */
	snprintf(cgroup_parent, sizeof(cgroup_parent), "hutch-%s", o->cfg->net_prefix);
	net_resolv_conf(resolv, sizeof(resolv));

	struct sandbox_spec spec = {
		.id = s->id,
		.run_dir = s->run_dir,
		.layers = layers,
		.netns_path = s->slot->netns_path,
		.uid_base = o->cfg->uid_base + (uint32_t)s->uid_index * SANDBOX_UID_COUNT,
		.cpu_count = t->cpu_count ? t->cpu_count : o->cfg->default_cpu,
		.memory_mb = t->memory_mb ? t->memory_mb : o->cfg->default_memory_mb,
		.disk_mb = req->upper_dir ? 0 : t->disk_mb ? t->disk_mb : o->cfg->default_disk_mb,
		.upper_dir = req->upper_dir,
		.pids_max = o->cfg->pids_max,
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
		.disk_pool = req->upper_dir ? 0 : ORCHESTR_DISK_POOL,
	};
	int r = ec_text ? o->rt->start(&spec, &s->rs) : -ENOMEM;
	free(ec_text);
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
		struct exec_opts so = { .cmd = start, .user = user, .cwd = workdir,
					.tag = "start", .background = true };
		int r = sandbox_exec(o, s, &so, &code, msg, sizeof(msg));
		if (r < 0)
			return seterr(err, 500, "the template's start command did not start: %s", msg);
	}
	if (isempty(ready))
		return 0;
	uint64_t deadline = now_usec() + READY_TIMEOUT_MS * 1000ull;
	for (;;) {
		struct exec_opts ro = { .cmd = ready, .user = user, .cwd = workdir,
					.timeout_ms = READY_RUN_MS };
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

	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s) {
		template_rec_clear(&t);
		return seterr(err, 500, "out of memory");
	}
	s->refs = 1;
	s->uid_index = -1;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->template_id, sizeof(s->template_id), "%s", t.id);
	s->cpu_count = t.cpu_count ? t.cpu_count : o->cfg->default_cpu;

	pthread_mutex_lock(&o->lock);
	if (o->count >= o->cfg->max_sandboxes)
		r = seterr(err, 429, "the maximum number of concurrent sandboxes (%u) is reached",
			   o->cfg->max_sandboxes);
	else if ((s->uid_index = uid_alloc(o)) < 0)
		r = seterr(err, 429, "no free sandbox slot");
	else
		o->count++; /* reserved; the sandbox joins the list once it runs */
	pthread_mutex_unlock(&o->lock);
	if (r < 0)
		goto fail_early;

	if (random_id(s->id, 20) < 0) {
		r = seterr(err, 500, "no randomness");
		goto fail;
	}
	orchestr_envd_token(o, s->id, s->envd_token);
	orchestr_traffic_token(o, s->id, s->traffic_token);
	json_t *public_traffic =
	    json_object_get(json_object_get(req->extra, "network"), "allowPublicTraffic");
	s->private_traffic = json_is_false(public_traffic);
	snprintf(s->run_dir, sizeof(s->run_dir), "%s/sandboxes/%s", o->cfg->data_dir, s->id);
	if (mkdir(s->run_dir, 0700) < 0) {
		r = seterr(err, 500, "cannot create %s: %s", s->run_dir, strerror(errno));
		goto fail;
	}
	uint64_t t0 = now_usec();
	r = netpool_acquire(o->np, req->allow_internet, &s->slot);
	uint64_t t1 = now_usec();
	if (r < 0) {
		s->slot = NULL;
		r = seterr(err, 503, "no network slot available: %s", strerror(-r));
		goto fail;
	}

	int64_t now = now_ms();
	struct sandbox_rec rec = {
		.state = SANDBOX_STARTING,
		.started_ms = now,
		.end_ms = now + (int64_t)timeout * 1000,
		.cpu_count = s->cpu_count,
		.memory_mb = t.memory_mb ? t.memory_mb : o->cfg->default_memory_mb,
		.disk_mb = t.disk_mb ? t.disk_mb : o->cfg->default_disk_mb,
		.metadata = (json_t *)req->metadata,
		.env_vars = (json_t *)req->env_vars,
		.extra = (json_t *)req->extra,
		.allow_internet = req->allow_internet,
		.auto_pause = req->auto_pause,
		.net_slot = (int)s->slot->index,
		.uid_base = o->cfg->uid_base + (uint32_t)s->uid_index * SANDBOX_UID_COUNT,
	};
	snprintf(rec.id, sizeof(rec.id), "%s", s->id);
	snprintf(rec.template_id, sizeof(rec.template_id), "%s", t.id);
	snprintf(rec.alias, sizeof(rec.alias), "%s", t.alias);
	snprintf(rec.key_id, sizeof(rec.key_id), "%s", req->key_id ? req->key_id : "");
	snprintf(rec.envd_version, sizeof(rec.envd_version), "%s", ENVD_PROTOCOL_VERSION);
	/* Recorded before anything runs, so a crash mid-create leaves a row to clean up. */
	if (store_sandbox_insert(o->st, &rec) < 0) {
		r = seterr(err, 500, "cannot record the sandbox");
		goto fail;
	}
	s->started_ms = now;
	/* In the registry from now on, so a kill that comes while it starts finds it. */
	s->starting = true;
	pthread_mutex_lock(&o->lock);
	s->next = o->list;
	o->list = sandbox_ref(s);
	pthread_mutex_unlock(&o->lock);
	uint64_t t2 = now_usec();
	if (req->before_start && (r = req->before_start(req->userdata, rec.uid_base)) < 0) {
		r = seterr(err, 500, "cannot prepare the sandbox: %s", strerror(-r));
		goto fail;
	}
	r = start_runtime(o, s, &t, req, err);
	if (r < 0)
		goto fail;
	if (!req->layers && (r = run_start_cmd(o, s, t.config, err)) < 0)
		goto fail;
	uint64_t t3 = now_usec();
	/* The timeout counts from when the sandbox is usable; one commit for end and state. */
	rec.end_ms = now_ms() + (int64_t)timeout * 1000;
	rec.state = SANDBOX_RUNNING;
	if (store_sandbox_update(o->st, &rec) < 0) {
		r = seterr(err, 500, "cannot record the sandbox");
		goto fail;
	}

	pthread_mutex_lock(&s->lock);
	bool killed = s->kill_requested;
	if (!killed)
		s->starting = false;
	pthread_mutex_unlock(&s->lock);
	if (killed) {
		r = seterr(err, 409, "the sandbox was killed while it started");
		goto fail;
	}
	template_rec_clear(&t);
	sandbox_unref(s); /* the registry holds it */
	log_info(
	    "Sandbox %s started from template %s (net %.1f ms, record %.1f ms, runtime %.1f ms, "
	    "state %.1f ms)",
	    s->id, s->template_id, (double)(t1 - t0) / 1000, (double)(t2 - t1) / 1000,
	    (double)(t3 - t2) / 1000, (double)(now_usec() - t3) / 1000);
	return store_sandbox_get(o->st, s->id, out);

fail:
	pthread_mutex_lock(&o->lock);
	o->count--;
	for (struct sandbox **pp = &o->list; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			sandbox_unref(s); /* the registry's reference */
			break;
		}
	pthread_mutex_unlock(&o->lock);
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
	template_rec_clear(&t);
	return r;
fail_early:
	sandbox_unref(s);
	template_rec_clear(&t);
	return r;
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

int orchestr_register_template(struct orchestr *o, const char *id, const char *layer_path)
{
	struct template_rec t = {
		.layers = json_pack("[s]", layer_path),
		.cpu_count = o->cfg->default_cpu,
		.memory_mb = o->cfg->default_memory_mb,
		.disk_mb = o->cfg->default_disk_mb,
		.created_ms = now_ms(),
	};
	if (!t.layers)
		return -ENOMEM;
	snprintf(t.id, sizeof(t.id), "%s", id);
	snprintf(t.alias, sizeof(t.alias), "%s", id);
	snprintf(t.envd_version, sizeof(t.envd_version), "%s", ENVD_PROTOCOL_VERSION);
	snprintf(t.status, sizeof(t.status), "ready");
	int r = store_template_put(o->st, &t);
	json_decref(t.layers);
	return r;
}

/* Sandboxes recorded by an earlier daemon: re-attaching is a later feature, so for now every
 * one is torn down completely (runtime, network slot, row) and nothing is left behind. */
static void cleanup_previous(struct orchestr *o)
{
	struct sandbox_filter f = { .limit = 1000 };
	struct sandbox_rec *recs = NULL;
	size_t n = 0;
	char *next = NULL;
	if (store_sandbox_list(o->st, &f, &recs, &n, &next) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char run_dir[PATH_MAX];
		snprintf(run_dir, sizeof(run_dir), "%s/sandboxes/%s", o->cfg->data_dir, recs[i].id);
		struct runtime_sandbox *rs = NULL;
		if (o->rt->attach(run_dir, &rs) >= 0)
			o->rt->destroy(rs);
		struct net_slot *slot = NULL;
		if (recs[i].net_slot >= 0 &&
		    netpool_adopt(o->np, (unsigned)recs[i].net_slot, &slot) >= 0)
			netpool_release(o->np, slot);
		store_sandbox_delete(o->st, recs[i].id);
		log_info("Removed sandbox %s left by a previous run", recs[i].id);
		sandbox_rec_clear(&recs[i]);
	}
	free(recs);
	free(next);
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
	o->uid_used = calloc(cfg->max_sandboxes, 1);
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
	cleanup_previous(o);
	r = -pthread_create(&o->evictor, NULL, evictor_main, o);
	if (r < 0) {
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
	snprintf(name, sizeof(name), "hutch-%s", o->cfg->net_prefix);
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
