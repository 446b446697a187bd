/* POST /init, GET /envs and GET /metrics: envd's control endpoints. */
#include <inttypes.h>
#include <sys/statvfs.h>
#include <time.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

struct envd envd = { .lock = PTHREAD_RWLOCK_INITIALIZER, .user_cgroup_fd = -1 };

static const char unauthorized_msg[] =
    "unauthorized access, please provide a valid access token or method signing if supported";

/* The newest /init timestamp applied (ns since the epoch); an older or equal one is a replay and
 * changes nothing, as in envd. Guarded by envd.lock. */
static int64_t last_init_ns = INT64_MIN;

static void free_secretp(char **s)
{
	secret_free(*s);
}

/* Moves the guest clock to the orchestrator's when it is >50 ms behind or >5 s ahead. The clock
 * is the whole machine's, so only where envd owns it: as root and either the VM's init (pid 1)
 * or asked to with HUTCH_ENVD_CLOCK_SYNC=1. HUTCH_ENVD_CLOCK_SYNC=0 always turns it off. */
static void clock_sync(int64_t sec, long nsec)
{
	const char *opt = getenv("HUTCH_ENVD_CLOCK_SYNC");
	if (geteuid() != 0 || streq(opt, "0") || !(getpid() == 1 || streq(opt, "1")))
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t want = sec * 1000000000LL + nsec;
	int64_t have = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
	if (have >= want - 50000000LL && have <= want + 5000000000LL)
		return;
	struct timespec ts = { .tv_sec = (time_t)sec, .tv_nsec = nsec };
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		log_warn_errno(-errno, "Failed to set the clock from /init: %m");
	else
		log_info("Clock set from /init (was %+" PRId64 " ms off)", (have - want) / 1000000);
}

static int string_field(const json_t *body, const char *key, const char **out, const char **err,
			const char *msg)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		*err = msg;
		return -EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

int envd_apply_init(const json_t *body, const char **err)
{
	const char *token, *user, *workdir, *ts;
	if (!json_is_object(body)) {
		*err = "the body must be a JSON object";
		return -EINVAL;
	}
	if (string_field(body, "accessToken", &token, err, "accessToken must be a string") < 0 ||
	    string_field(body, "defaultUser", &user, err, "defaultUser must be a string") < 0 ||
	    string_field(body, "defaultWorkdir", &workdir, err, "defaultWorkdir must be a string") <
		0 ||
	    string_field(body, "timestamp", &ts, err, "timestamp must be an RFC 3339 string") < 0)
		return -EINVAL;

	int64_t sec = 0;
	long nsec = 0;
	if (ts && parse_rfc3339(ts, &sec, &nsec) < 0) {
		*err = "timestamp must be an RFC 3339 string";
		return -EINVAL;
	}
	if (!isempty(workdir) && workdir[0] != '/') {
		*err = "defaultWorkdir must be an absolute path";
		return -EINVAL;
	}
	if (user && strlen(user) >= sizeof(((struct user_info *)0)->name)) {
		*err = "defaultUser is too long";
		return -EINVAL;
	}

	json_t *envs = json_object_get(body, "envVars");
	_cleanup_json_ json_t *new_envs = NULL;
	if (envs && !json_is_null(envs)) {
		const char *k;
		json_t *v;
		if (!json_is_object(envs)) {
			*err = "envVars must be an object of strings";
			return -EINVAL;
		}
		json_object_foreach (envs, k, v)
			if (!json_is_string(v) || !*k || strchr(k, '=')) {
				*err = "envVars must map names (no '=') to strings";
				return -EINVAL;
			}
		new_envs = json_deep_copy(envs);
		if (!new_envs) {
			*err = "out of memory";
			return -ENOMEM;
		}
	}
	_cleanup_(free_secretp) char *new_token = token ? strdup(token) : NULL;
	_cleanup_free_ char *new_user = !isempty(user) ? strdup(user) : NULL;
	_cleanup_free_ char *new_workdir = !isempty(workdir) ? strdup(workdir) : NULL;
	if ((token && !new_token) || (!isempty(user) && !new_user) ||
	    (!isempty(workdir) && !new_workdir)) {
		*err = "out of memory";
		return -ENOMEM;
	}

	pthread_rwlock_wrlock(&envd.lock);
	int64_t ns = sec * 1000000000LL + nsec;
	if (ts && ns <= last_init_ns) {
		/* A stale or replayed /init: keep what the newer one set. */
		pthread_rwlock_unlock(&envd.lock);
		return 0;
	}
	if (ts)
		last_init_ns = ns;
	if (new_envs) {
		json_decref(envd.env_vars);
		envd.env_vars = TAKE_PTR(new_envs);
	}
	/* As in envd, a missing token clears the one set before (the caller was authorised). */
	free_secretp(&envd.access_token);
	envd.access_token = TAKE_PTR(new_token);
	if (new_user) {
		free(envd.default_user);
		envd.default_user = TAKE_PTR(new_user);
	}
	if (new_workdir) {
		free(envd.default_workdir);
		envd.default_workdir = TAKE_PTR(new_workdir);
	}
	pthread_rwlock_unlock(&envd.lock);

	if (ts)
		clock_sync(sec, nsec);
	return 0;
}

/* ---- POST /init ---- */

static int init_begin(struct http_req *req)
{
	req->body_limit = 1 << 20;
	return 0;
}

/* First-time set is open; later the X-Access-Token header, or the body's accessToken, must
 * match the token in force (envd accepts a re-init that repeats the token). */
static bool init_authorised(struct http_req *req, const json_t *body)
{
	const char *hdr = http_header(req, "X-Access-Token");
	const char *tok = json_string_value(json_object_get(body, "accessToken"));
	pthread_rwlock_rdlock(&envd.lock);
	bool ok = !envd.access_token || secret_equal(hdr, envd.access_token) ||
		  secret_equal(tok, envd.access_token);
	pthread_rwlock_unlock(&envd.lock);
	return ok;
}

static int init_finish(struct http_req *req)
{
	_cleanup_json_ json_t *body = NULL;
	if (req->body.len > 0) {
		json_error_t jerr;
		body = json_loadb(req->body.data, req->body.len, 0, &jerr);
		explicit_bzero(req->body.data, req->body.len); /* it may hold the token */
		if (!body)
			return http_respond_error(req, 400, "invalid JSON body: %s", jerr.text);
	} else {
		body = json_object();
		if (!body)
			return http_respond_error(req, 500, "out of memory");
	}
	if (!json_is_object(body))
		return http_respond_error(req, 400, "the body must be a JSON object");
	if (!init_authorised(req, body))
		return http_respond_error(req, 401, "access token validation failed");

	const char *err = NULL;
	int r = envd_apply_init(body, &err);
	if (r < 0)
		return http_respond_error(req, r == -ENOMEM ? 500 : 400, "%s", err);

	struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	if (resp) {
		MHD_add_response_header(resp, "X-Envd-Version", ENVD_VERSION);
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	}
	return http_queue(req, 204, resp);
}

const struct http_route init_route = {
	.begin = init_begin,
	.finish = init_finish,
};

/* ---- GET /envs ---- */

static int json_no_store(struct http_req *req, json_t *j)
{
	_cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	json_decref(j);
	if (!s)
		return http_respond_error(req, 500, "out of memory");
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_COPY);
	if (resp) {
		MHD_add_response_header(resp, "Content-Type", "application/json");
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	}
	return http_queue(req, 200, resp);
}

json_t *envd_global_env(void)
{
	json_t *env = json_pack("{s:s}", "E2B_SANDBOX", "true");
	pthread_rwlock_rdlock(&envd.lock);
	if (env && envd.env_vars)
		json_object_update(env, envd.env_vars);
	pthread_rwlock_unlock(&envd.lock);
	return env;
}

static int envs_begin(struct http_req *req)
{
	if (!auth_token_ok(req))
		return http_respond_error(req, 401, "%s", unauthorized_msg);
	json_t *copy = envd_global_env();
	return json_no_store(req, copy);
}

const struct http_route envs_route = { .begin = envs_begin };

/* ---- GET /metrics ---- */

struct cpu_sample {
	uint64_t busy, total;
};

static int cpu_read(struct cpu_sample *s)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/stat", "re");
	unsigned long long v[8] = { 0 };
	if (!f)
		return -errno;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) < 4)
		return -EIO;
	/* user nice system idle iowait irq softirq steal (guest time is inside user/nice). */
	s->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	s->busy = s->total - v[3] - v[4];
	return 0;
}

/* Busy share of all CPUs since the previous call (or over 100 ms for the first one). */
static double cpu_used_pct(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct cpu_sample prev;
	static bool have_prev;
	static double last_pct;
	struct cpu_sample now;

	pthread_mutex_lock(&lock);
	if (!have_prev && cpu_read(&prev) >= 0) {
		have_prev = true;
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	/* Fewer than ~20 ticks say nothing useful: keep the last value until more time passed. */
	if (have_prev && cpu_read(&now) >= 0 && now.total >= prev.total + 20) {
		uint64_t dt = now.total - prev.total;
		uint64_t db = now.busy >= prev.busy ? now.busy - prev.busy : 0;
		last_pct = MIN(100.0, 100.0 * (double)db / (double)dt);
		prev = now;
	}
	double pct = (double)(int64_t)(last_pct * 100.0 + 0.5) / 100.0;
	pthread_mutex_unlock(&lock);
	return pct;
}

struct mem_info {
	uint64_t total, used, cache;
};

static uint64_t kv_lookup(const char *file, const char *key, bool kib)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	char line[256];
	size_t kl = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && (line[kl] == ':' || line[kl] == ' '))
			return strtoull(line + kl + 1 + strspn(line + kl + 1, " :"), NULL, 10) *
			       (kib ? 1024 : 1);
	return 0;
}

static uint64_t file_u64(const char *file)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	unsigned long long v;
	if (!f || fscanf(f, "%llu", &v) != 1)
		return 0; /* missing, or "max" */
	return v;
}

static void mem_read(struct mem_info *m)
{
	uint64_t free_b = kv_lookup("/proc/meminfo", "MemFree", true);
	uint64_t buffers = kv_lookup("/proc/meminfo", "Buffers", true);
	m->total = kv_lookup("/proc/meminfo", "MemTotal", true);
	m->cache = kv_lookup("/proc/meminfo", "Cached", true) +
		   kv_lookup("/proc/meminfo", "SReclaimable", true);
	m->used =
	    m->total > free_b + buffers + m->cache ? m->total - free_b - buffers - m->cache : 0;

	/* A container sandbox sees the host in /proc/meminfo; its cgroup limit is its memory. */
	uint64_t limit = file_u64("/sys/fs/cgroup/memory.max");
	if (limit > 0 && (m->total == 0 || limit < m->total)) {
		uint64_t current = file_u64("/sys/fs/cgroup/memory.current");
		uint64_t inactive = kv_lookup("/sys/fs/cgroup/memory.stat", "inactive_file", false);
		m->total = limit;
		m->cache = kv_lookup("/sys/fs/cgroup/memory.stat", "file", false);
		m->used = current > inactive ? current - inactive : 0;
	}
}

static int metrics_begin(struct http_req *req)
{
	if (!auth_token_ok(req))
		return http_respond_error(req, 401, "%s", unauthorized_msg);
	struct mem_info m = { 0 };
	struct statvfs sv;
	uint64_t disk_total = 0, disk_used = 0;
	mem_read(&m);
	if (statvfs("/", &sv) == 0) {
		disk_total = (uint64_t)sv.f_blocks * sv.f_frsize;
		disk_used = disk_total - (uint64_t)sv.f_bavail * sv.f_frsize;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	json_t *j =
	    json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "ts",
		      (json_int_t)time(NULL), "cpu_count", (json_int_t)MAX(ncpu, 1L),
		      "cpu_used_pct", cpu_used_pct(), "mem_total", (json_int_t)m.total, "mem_used",
		      (json_int_t)m.used, "mem_cache", (json_int_t)m.cache, "mem_total_mib",
		      (json_int_t)(m.total >> 20), "mem_used_mib", (json_int_t)(m.used >> 20),
		      "disk_used", (json_int_t)disk_used, "disk_total", (json_int_t)disk_total);
	return json_no_store(req, j);
}

const struct http_route metrics_route = { .begin = metrics_begin };
