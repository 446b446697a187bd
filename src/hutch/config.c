#include "config.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/macro.h"
#include "common/util.h"

static int set_str(char **dst, const char *v)
{
	char *n = strdup(v);
	if (!n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

/* The directory holding the running binary (build/ when run from the tree). */
static char *exe_dir(const char *argv0)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0) {
		if (!argv0 || !realpath(argv0, buf))
			return strdup(".");
		n = (ssize_t)strlen(buf);
	}
	buf[n] = 0;
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = 0;
	return strdup(buf);
}

int config_defaults(struct hutch_config *c, const char *argv0)
{
	memset(c, 0, sizeof(*c));
	int r;
	if (geteuid() == 0) {
		r = set_str(&c->data_dir, "/var/lib/hutch");
		if (r >= 0)
			r = set_str(&c->cache_dir, "/var/cache/hutch");
	} else {
		const char *home = getenv("HOME");
		char buf[PATH_MAX];
		snprintf(buf, sizeof(buf), "%s/.local/share/hutch", home ? home : ".");
		r = set_str(&c->data_dir, buf);
		snprintf(buf, sizeof(buf), "%s/.cache/hutch", home ? home : ".");
		if (r >= 0)
			r = set_str(&c->cache_dir, buf);
	}
	if (r < 0)
		return r;
	_cleanup_free_ char *dir = exe_dir(argv0);
	if (!dir)
		return -ENOMEM;
	if (asprintf(&c->envd_bundle, "%s/envd-bundle", dir) < 0 ||
	    asprintf(&c->init_path, "%s/src/sandbox-tools/hutch-init", dir) < 0)
		return -ENOMEM;
	_cleanup_free_ char *shim = NULL;
	if (asprintf(&shim, "%s/hutch-shim", dir) < 0)
		return -ENOMEM;
	if (access(shim, X_OK) == 0)
		c->shim_path = TAKE_PTR(shim);
	snprintf(c->listen_addr, sizeof(c->listen_addr), "127.0.0.1");
	c->listen_port = 3000;
	snprintf(c->sandbox_addr, sizeof(c->sandbox_addr), "127.0.0.1");
	c->sandbox_port = 49983;
	c->default_timeout_s = 300;
	c->max_timeout_s = 24 * 3600;
	c->default_cpu = 2;
	c->default_memory_mb = 512;
	c->default_disk_mb = 2048;
	c->pids_max = 1024;
	c->pids_reserve = 128;
	c->max_sandboxes = 1000;
	c->start_timeout_ms = 10000;
	c->warm_sandboxes = 2;
	c->max_body = 1 << 20;
	c->api_idle_timeout_s = 60;
	c->sandbox_idle_timeout_s = 620;
	c->conns_per_ip = 512;
	snprintf(c->net_subnet, sizeof(c->net_subnet), "10.11.0.0");
	snprintf(c->net_prefix, sizeof(c->net_prefix), "hb");
	c->net_warm = 4;
	c->uid_base = 1u << 20;
	return 0;
}

static int set_uint(unsigned *dst, const char *name, const char *v, unsigned min, unsigned max)
{
	uint64_t n;
	if (parse_u64(v, &n) < 0 || n < min || n > max) {
		fprintf(stderr, "hutch: --%s wants a whole number from %u to %u, not '%s'\n", name,
			min, max, v);
		return -EINVAL;
	}
	*dst = (unsigned)n;
	return 0;
}

static int set_addr(char *addr, size_t size, uint16_t *port, const char *name, const char *v)
{
	if (parse_listen_address(v, addr, size, port) < 0) {
		fprintf(stderr, "hutch: --%s wants ADDR:PORT, not '%s'\n", name, v);
		return -EINVAL;
	}
	return 0;
}

int config_set(struct hutch_config *c, const char *name, const char *v)
{
	unsigned tmp = 0;
	int r;
	if (streq(name, "data-dir"))
		return set_str(&c->data_dir, v);
	if (streq(name, "cache-dir"))
		return set_str(&c->cache_dir, v);
	if (streq(name, "listen"))
		return set_addr(c->listen_addr, sizeof(c->listen_addr), &c->listen_port, name, v);
	if (streq(name, "sandbox-listen"))
		return set_addr(c->sandbox_addr, sizeof(c->sandbox_addr), &c->sandbox_port, name,
				v);
	if (streq(name, "domain"))
		return set_str(&c->domain, v);
	if (streq(name, "envd-bundle"))
		return set_str(&c->envd_bundle, v);
	if (streq(name, "init-path"))
		return set_str(&c->init_path, v);
	if (streq(name, "mirror"))
		return set_str(&c->mirror, v);
	if (streq(name, "image-dirs"))
		return set_str(&c->image_dirs, v);
	if (streq(name, "default-timeout"))
		return set_uint(&c->default_timeout_s, name, v, 1, 30 * 86400);
	if (streq(name, "max-timeout"))
		return set_uint(&c->max_timeout_s, name, v, 1, 30 * 86400);
	if (streq(name, "default-cpu"))
		return set_uint(&c->default_cpu, name, v, 1, 256);
	if (streq(name, "default-memory"))
		return set_uint(&c->default_memory_mb, name, v, 16, 1 << 20);
	if (streq(name, "default-disk"))
		return set_uint(&c->default_disk_mb, name, v, 16, 1 << 24);
	if (streq(name, "pids-max"))
		return set_uint(&c->pids_max, name, v, 16, 1 << 22);
	if (streq(name, "pids-reserve"))
		return set_uint(&c->pids_reserve, name, v, 0, 1 << 16);
	if (streq(name, "max-sandboxes"))
		return set_uint(&c->max_sandboxes, name, v, 1, 16384);
	if (streq(name, "start-timeout-ms"))
		return set_uint(&c->start_timeout_ms, name, v, 100, 600000);
	if (streq(name, "warm-sandboxes"))
		return set_uint(&c->warm_sandboxes, name, v, 0, 64);
	if (streq(name, "max-body")) {
		r = set_uint(&tmp, name, v, 1024, 1u << 30);
		c->max_body = tmp;
		return r;
	}
	if (streq(name, "api-idle-timeout"))
		return set_uint(&c->api_idle_timeout_s, name, v, 1, 86400);
	if (streq(name, "sandbox-idle-timeout"))
		return set_uint(&c->sandbox_idle_timeout_s, name, v, 1, 86400);
	if (streq(name, "conns-per-ip"))
		return set_uint(&c->conns_per_ip, name, v, 1, 65536);
	if (streq(name, "net-subnet")) {
		snprintf(c->net_subnet, sizeof(c->net_subnet), "%s", v);
		return 0;
	}
	if (streq(name, "net-prefix")) {
		if (strlen(v) < 1 || strlen(v) > 4 ||
		    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(v)) {
			fprintf(stderr,
				"hutch: --net-prefix wants 1-4 lowercase letters or digits\n");
			return -EINVAL;
		}
		snprintf(c->net_prefix, sizeof(c->net_prefix), "%s", v);
		return 0;
	}
	if (streq(name, "net-warm"))
		return set_uint(&c->net_warm, name, v, 0, 1024);
	if (streq(name, "uid-base"))
		return set_uint(&c->uid_base, name, v, 65536, 1u << 30);
	fprintf(stderr, "hutch: unknown option '%s'\n", name);
	return -EINVAL;
}

int config_load_file(struct hutch_config *c, const char *path)
{
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j || !json_is_object(j)) {
		fprintf(stderr, "hutch: cannot read config '%s': %s\n", path,
			j ? "not a JSON object" : err.text);
		json_decref(j);
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	int r = 0;
	json_object_foreach (j, k, v) {
		char buf[64];
		const char *s = buf;
		if (json_is_string(v))
			s = json_string_value(v);
		else if (json_is_integer(v))
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		else {
			fprintf(stderr, "hutch: config '%s': '%s' must be a string or a number\n",
				path, k);
			r = -EINVAL;
			break;
		}
		if ((r = config_set(c, k, s)) < 0)
			break;
	}
	json_decref(j);
	return r;
}

const char *const config_option_names[] = {
	"data-dir",	    "cache-dir",      "listen",		  "sandbox-listen",
	"domain",	    "envd-bundle",    "init-path",	  "mirror",
	"default-timeout",  "max-timeout",    "default-cpu",	  "default-memory",
	"default-disk",	    "pids-max",	      "pids-reserve",	  "max-sandboxes",
	"start-timeout-ms", "max-body",	      "net-subnet",	  "net-prefix",
	"net-warm",	    "uid-base",	      "api-idle-timeout", "sandbox-idle-timeout",
	"conns-per-ip",	    "warm-sandboxes", "image-dirs",
};
const size_t config_option_count = ELEMENTSOF(config_option_names);

int config_load_env(struct hutch_config *c)
{
	for (size_t i = 0; i < config_option_count; i++) {
		char env[64] = "HUTCH_";
		size_t o = strlen(env);
		for (const char *p = config_option_names[i]; *p && o + 1 < sizeof(env); p++)
			env[o++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		env[o] = 0;
		const char *v = getenv(env);
		if (v && *v) {
			int r = config_set(c, config_option_names[i], v);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int config_finish(struct hutch_config *c)
{
	if (!c->domain && asprintf(&c->domain, "localhost:%u", (unsigned)c->sandbox_port) < 0)
		return -ENOMEM;
	if (c->default_timeout_s > c->max_timeout_s) {
		fprintf(stderr, "hutch: --default-timeout exceeds --max-timeout\n");
		return -EINVAL;
	}
	return 0;
}

void config_free(struct hutch_config *c)
{
	free(c->data_dir);
	free(c->cache_dir);
	free(c->domain);
	free(c->envd_bundle);
	free(c->init_path);
	free(c->shim_path);
	free(c->mirror);
	free(c->image_dirs);
	memset(c, 0, sizeof(*c));
}
