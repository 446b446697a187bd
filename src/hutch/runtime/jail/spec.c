/* sandbox_spec <-> RUN_DIR/spec.json, pid files and tree removal for RUN_DIR. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include "jail.h"
#include "common/macro.h"
#include "common/util.h"
#include "json/jsonx.h"

static int set_str(json_t *o, const char *key, const char *v)
{
	if (!v)
		return 0;
	return json_object_set_new(o, key, json_string(v)) < 0 ? -ENOMEM : 0;
}

static int set_uint(json_t *o, const char *key, uint64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v)) < 0 ? -ENOMEM : 0;
}

int jail_spec_write(const struct sandbox_spec *s, const char *path)
{
	_cleanup_json_ json_t *o = json_object();
	_cleanup_json_ json_t *layers = json_array();
	if (!o || !layers)
		return -ENOMEM;
	for (const char *const *l = s->layers; l && *l; l++)
		if (json_array_append_new(layers, json_string(*l)) < 0)
			return -ENOMEM;
	int r = 0;
	r |= set_str(o, "id", s->id);
	r |= set_str(o, "runDir", s->run_dir);
	r |= json_object_set(o, "layers", layers) < 0 ? -ENOMEM : 0;
	r |= set_str(o, "netnsPath", s->netns_path);
	r |= set_uint(o, "uidBase", s->uid_base);
	r |= set_uint(o, "cpuCount", s->cpu_count);
	r |= set_uint(o, "memoryMb", s->memory_mb);
	r |= set_uint(o, "diskMb", s->disk_mb);
	r |= set_uint(o, "pidsMax", s->pids_max);
	r |= set_uint(o, "pidsReserve", s->pids_reserve);
	r |= set_str(o, "hostname", s->hostname);
	r |= set_str(o, "envdBundle", s->envd_bundle);
	r |= set_str(o, "initPath", s->init_path);
	r |= set_str(o, "envdConfig", s->envd_config);
	r |= set_uint(o, "startTimeoutMs", s->start_timeout_ms);
	r |= set_str(o, "resolvConf", s->resolv_conf);
	r |= set_str(o, "shimPath", s->shim_path);
	r |= set_str(o, "cgroupParent", s->cgroup_parent);
	r |= set_str(o, "upperDir", s->upper_dir);
	r |= json_object_set_new(o, "allowSetuid", json_boolean(s->allow_setuid)) < 0 ? -ENOMEM : 0;
	if (r)
		return -ENOMEM;
	/* spec.json holds envd's access token: root only. */
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	_cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	return write_all(fd, text, strlen(text));
}

static const char *get_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static unsigned get_uint(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v < 0 || v > UINT32_MAX ? 0 : (unsigned)v;
}

struct jail_spec *jail_spec_free(struct jail_spec *js)
{
	if (!js)
		return NULL;
	json_decref(js->json);
	free(js->layers);
	free(js);
	return NULL;
}

static void jail_spec_freep(struct jail_spec **js)
{
	jail_spec_free(*js);
}

int jail_spec_read(const char *path, struct jail_spec **out)
{
	_cleanup_(jail_spec_freep) struct jail_spec *js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	json_error_t err;
	js->json = json_load_file(path, 0, &err);
	if (!js->json || !json_is_object(js->json))
		return -EINVAL;
	json_t *o = js->json, *layers = json_object_get(o, "layers");
	size_t n = json_array_size(layers);
	js->layers = calloc(n + 1, sizeof(char *));
	if (!js->layers)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(js->layers[i] = json_string_value(json_array_get(layers, i))))
			return -EINVAL;
	struct sandbox_spec *s = &js->spec;
	s->id = get_str(o, "id");
	s->run_dir = get_str(o, "runDir");
	s->layers = js->layers;
	s->netns_path = get_str(o, "netnsPath");
	s->uid_base = get_uint(o, "uidBase");
	s->cpu_count = get_uint(o, "cpuCount");
	s->memory_mb = get_uint(o, "memoryMb");
	s->disk_mb = get_uint(o, "diskMb");
	s->pids_max = get_uint(o, "pidsMax");
	s->pids_reserve = get_uint(o, "pidsReserve");
	s->hostname = get_str(o, "hostname");
	s->envd_bundle = get_str(o, "envdBundle");
	s->init_path = get_str(o, "initPath");
	s->envd_config = get_str(o, "envdConfig");
	s->start_timeout_ms = get_uint(o, "startTimeoutMs");
	s->resolv_conf = get_str(o, "resolvConf");
	s->shim_path = get_str(o, "shimPath");
	s->cgroup_parent = get_str(o, "cgroupParent");
	s->upper_dir = get_str(o, "upperDir");
	s->allow_setuid = json_is_true(json_object_get(o, "allowSetuid"));
	if (isempty(s->id) || isempty(s->run_dir) || n == 0 || s->uid_base == 0 ||
	    (s->upper_dir && s->disk_mb))
		return -EINVAL;
	*out = TAKE_PTR(js);
	return 0;
}

uint64_t jail_proc_starttime(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* comm may contain spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field < 22 && p; field++) /* p: the space before field 3 */
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

int jail_pidfile_write(int dirfd, const char *name, pid_t pid)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%d %" PRIu64 "\n", (int)pid, jail_proc_starttime(pid));
	return jail_write_file_at(dirfd, name, buf, 0644);
}

int jail_pidfile_read(int dirfd, const char *name, pid_t *pid, uint64_t *starttime)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -EINVAL;
	buf[n] = 0;
	int p;
	unsigned long long st;
	if (sscanf(buf, "%d %llu", &p, &st) != 2 || p <= 0)
		return -EINVAL;
	*pid = p;
	*starttime = st;
	return 0;
}

int jail_write_file_at(int dirfd, const char *name, const char *data, mode_t mode)
{
	_cleanup_close_ int fd =
	    openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	return write_all(fd, data, strlen(data));
}

char jail_errmsg[512];

int jail_fail(const char *op, const char *what)
{
	int r = negative_errno();
	snprintf(jail_errmsg, sizeof(jail_errmsg), "%s '%s': %s", op, what ? what : "",
		 strerror(-r));
	return r;
}
