/* `hutch serve`: the whole control plane on one machine. */
#include <ctype.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <nettle/sha2.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/stat.h>
#include "api/api.h"
#include "cli/cli.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "frontdoor/frontdoor.h"
#include "net/netpool.h"
#include "orchestr/warmpool.h"
#include "template/builder.h"
#include "template/builtin.h"
#include "template/template.h"

static void serve_usage(FILE *f)
{
	fprintf(f,
		"Usage: hutch serve [--data-dir DIR] [--listen ADDR:PORT] [--sandbox-listen "
		"ADDR:PORT]\n"
		"                   [--domain D] [--config FILE] [--log-level LEVEL] [OPTIONS]\n\n"
		"Runs the E2B-compatible REST API (default 127.0.0.1:3000) and the sandbox\n"
		"front door (default 127.0.0.1:49983). Needs root.\n\nOptions (also as "
		"HUTCH_<NAME> variables and config file keys):\n");
	for (size_t i = 0; i < config_option_count; i++)
		fprintf(f, "  --%s\n", config_option_names[i]);
}

static void hash_key(const char *key, uint8_t out[32])
{
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(key), (const uint8_t *)key);
	sha256_digest(&ctx, 32, out);
}

static void key_mask(const char *key, char *out, size_t size)
{
	size_t n = strlen(key);
	if (n > 12)
		snprintf(out, size, "%.8s...%s", key, key + n - 4);
	else
		snprintf(out, size, "%s", "e2b_...");
}

static bool valid_key(const char *k)
{
	if (!startswith(k, "e2b_") || strlen(k) < 4 + 16 || strlen(k) > 4 + 128)
		return false;
	for (const char *p = k + 4; *p; p++)
		if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
			return false;
	return true;
}

/* Open files are charged to each sandbox's memory cgroup, so memory limits bound them; the
 * legacy host-wide fs.file-max (sized from RAM when no systemd raised it at boot) must not be
 * the tighter bound, or one sandbox holding its share of files makes open() fail with ENFILE
 * for every unprivileged program on the host. Raised as systemd does at boot; never lowered. */
static void raise_file_max(void)
{
	static const char path[] = "/proc/sys/fs/file-max";
	static const char want[] = "9223372036854775807";
	char buf[32] = "";
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
		return;
	uint64_t cur;
	buf[strcspn(buf, "\n")] = 0;
	if (parse_u64(buf, &cur) == 0 && cur >= (uint64_t)INT64_MAX)
		return;
	if (pwrite(fd, want, strlen(want), 0) < 0)
		log_warn_errno(-errno, "Failed to raise fs.file-max from %s: %m", buf);
	else
		log_info("Raised fs.file-max from %s (open files are bounded by memory cgroups)",
			 buf);
}

/* HUTCH_API_KEY seeds a key; otherwise the first start makes one, prints it once and writes it
 * to DATA_DIR/api-key (0600). Only hashes are stored. */
static int bootstrap_key(struct hutch_config *cfg, struct store *st)
{
	const char *seed = getenv("HUTCH_API_KEY");
	uint8_t hash[32];
	struct api_key k;
	if (seed && *seed) {
		if (!valid_key(seed))
			return log_error_errno(-EINVAL,
					       "HUTCH_API_KEY must look like e2b_ followed "
					       "by 16 to 128 lowercase hex digits");
		hash_key(seed, hash);
		if (store_key_lookup(st, hash, &k) == 0)
			return 0;
		char mask[32];
		key_mask(seed, mask, sizeof(mask));
		return store_key_create(st, "seeded", hash, mask, &k);
	}
	if (store_key_count(st) > 0)
		return 0;
	uint8_t rnd[20];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return -EIO;
	char key[4 + 40 + 1] = "e2b_";
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(key + 4 + 2 * i, 3, "%02x", rnd[i]);
	hash_key(key, hash);
	char mask[32];
	key_mask(key, mask, sizeof(mask));
	int r = store_key_create(st, "default", hash, mask, &k);
	if (r < 0)
		return log_error_errno(r, "Failed to store the API key: %m");
	char path[4096];
	snprintf(path, sizeof(path), "%s/api-key", cfg->data_dir);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, key, strlen(key)) < 0 || write_all(fd, "\n", 1) < 0)
		return log_error_errno(-errno, "Failed to write %s: %m", path);
	fprintf(stderr, "Created the first API key (shown once; also in %s):\n\n    %s\n\n", path,
		key);
	return 0;
}

/* One daemon per data dir (a lock file) and per network prefix (an abstract socket name: its
 * links, nftables table and cgroup are named after it). Both go with the process, even on a
 * crash, and are never inherited (close-on-exec). Returns 0 with the fds in lock_fds. */
static int lock_instance(const struct hutch_config *cfg, int lock_fds[2])
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/serve.lock", cfg->data_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return log_error_errno(-errno, "Failed to open %s: %m", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(fd);
		if (r == -EWOULDBLOCK)
			return log_error_errno(
			    -EBUSY, "Another hutch serve (pid %s) is using the data dir %s",
			    pid[0] ? pid : "?", cfg->data_dir);
		return log_error_errno(r, "Failed to lock %s: %m", path);
	}
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
		log_warn_errno(-errno, "Failed to write %s: %m", path);

	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		close(fd);
		return log_error_errno(-errno, "Failed to create a socket: %m");
	}
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int nlen =
	    snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "hutch-net-%s", cfg->net_prefix);
	if (bind(sock, (struct sockaddr *)&a,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)nlen)) < 0) {
		int r = -errno;
		close(sock);
		close(fd);
		if (r == -EADDRINUSE)
			return log_error_errno(
			    -EBUSY,
			    "Another hutch serve is using the network prefix '%s' "
			    "(choose another with --net-prefix)",
			    cfg->net_prefix);
		return log_error_errno(r, "Failed to lock the network prefix: %m");
	}
	lock_fds[0] = fd;
	lock_fds[1] = sock;
	return 0;
}

static int parse_args(int argc, char **argv, struct hutch_config *cfg, enum log_level *level)
{
	enum { OPT_CONFIG = 1000, OPT_LOG_LEVEL, OPT_HELP };
	struct option opts[64]; /* every config option + 3 + the end */
	size_t n = 0;
	if (config_option_count + 4 > ELEMENTSOF(opts))
		return log_error_errno(-E2BIG, "Too many options for the argument parser");
	for (; n < config_option_count; n++)
		opts[n] =
		    (struct option){ config_option_names[n], required_argument, NULL, (int)n };
	opts[n++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	opts[n++] = (struct option){ "log-level", required_argument, NULL, OPT_LOG_LEVEL };
	opts[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	opts[n] = (struct option){ 0 };

	/* The config file first, so flags win over it. */
	for (int i = 1; i < argc - 1; i++)
		if (streq(argv[i], "--config") && config_load_file(cfg, argv[i + 1]) < 0)
			return -EINVAL;
	if (config_load_env(cfg) < 0)
		return -EINVAL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		if (c >= 0 && c < (int)config_option_count) {
			if (config_set(cfg, config_option_names[c], optarg) < 0)
				return -EINVAL;
		} else if (c == OPT_CONFIG) {
			continue;
		} else if (c == OPT_LOG_LEVEL) {
			if (!log_level_parse(optarg, level)) {
				fprintf(stderr,
					"hutch: --log-level wants debug, info, warn or error\n");
				return -EINVAL;
			}
		} else if (c == OPT_HELP || c == 'h') {
			serve_usage(stdout);
			return 1;
		} else {
			serve_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hutch serve: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return config_finish(cfg);
}

/* The addresses of the Debian mirror template builds use (apt inside a build sandbox), as /32s
 * exempt from the sandbox firewall's reserved ranges: a mirror on a private or test network
 * stays reachable. NULL-terminated, malloc'd; NULL when there is none. */
static char **mirror_cidrs(const struct hutch_config *cfg)
{
	_cleanup_free_ char *uri = NULL;
	if (cfg->mirror)
		uri = strdup(cfg->mirror);
	else if (template_apt_mirror(NULL, "bookworm", &uri) < 0)
		return NULL;
	const char *p = uri ? strstr(uri, "://") : NULL;
	if (!p)
		return NULL;
	p += 3;
	char host[256];
	size_t n = strcspn(p, ":/");
	if (n == 0 || n >= sizeof(host))
		return NULL;
	memcpy(host, p, n);
	host[n] = 0;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return NULL;
	size_t count = 0;
	for (struct addrinfo *a = res; a; a = a->ai_next)
		count++;
	char **out = calloc(count + 1, sizeof(char *));
	size_t k = 0;
	for (struct addrinfo *a = res; out && a; a = a->ai_next) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof(ip));
		if (asprintf(&out[k], "%s/32", ip) >= 0)
			k++;
	}
	freeaddrinfo(res);
	return out;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/*
 * Builds the built-in templates (base) through the template builder and keeps sandboxes of each
 * started ahead. Runs before the API listens: /health answers once base can be used. With every
 * layer in the shared cache this takes milliseconds; the first build on a machine takes about a
 * minute (debootstrap, apt), its log in the daemon's log and in the build's record. SIGTERM or
 * SIGINT (in `stop`, blocked) meanwhile stops the build: -ECANCELED (the caller's cleanup kills
 * a running step's sandbox at once, but waits for a debootstrap in progress).
 */
static int build_builtin_templates(struct hutch_server *srv, const sigset_t *stop)
{
	for (size_t i = 0; i < builtin_templates_n; i++) {
		const struct builtin_template *bt = &builtin_templates[i];
		char build_id[BUILTIN_BUILD_ID_LEN + 1];
		uint64_t t0 = now_usec();
		int r = builtin_template_start(srv->builder, srv->store, srv->cfg, bt, build_id);
		if (r < 0)
			return r;
		log_info("Building the %s template (build %s) from %s; the first time on a machine "
			 "takes about a minute, later starts use the layer cache",
			 bt->name, build_id, bt->path);
		while ((r = builder_wait(srv->builder, build_id, 200)) == -ETIMEDOUT) {
			const struct timespec now = { 0, 0 };
			int sig = sigtimedwait(stop, NULL, &now);
			if (sig > 0) {
				log_info(
				    "Received signal %d while building the %s template: stopping",
				    sig, bt->name);
				return -ECANCELED;
			}
		}
		if (r < 0)
			return log_error_errno(r,
					       "Failed to build the %s template (its log: %s/"
					       "template-builds/%s.log): %m",
					       bt->name, srv->cfg->data_dir, build_id);
		log_info("The %s template is ready (%.1f s)", bt->name,
			 (double)(now_usec() - t0) / 1e6);
		if ((r = orchestr_warm_template(srv->orchestr, bt->name)) < 0)
			return log_error_errno(r, "Failed to register the %s template: %m",
					       bt->name);
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	struct hutch_config cfg;
	enum log_level level = LOG_LEVEL_INFO;
	if (config_defaults(&cfg, argv[0]) < 0)
		return 1;
	int r = parse_args(argc, argv, &cfg, &level);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 2;
	}
	log_setup("hutch", level, true);
	/* Before any thread: the HTTP servers run a thread per connection, and each new thread
	 * took a malloc arena of its own (up to 8 per core), each keeping its high-water mark, so
	 * RSS crept up ~4 MiB per 1000 sandboxes without a leak. One arena (small allocations still
	 * come from per-thread caches) kept it flat at ~8 MiB over 1500 (soak.test.mjs checks). */
	mallopt(M_ARENA_MAX, 1);
	/* Modes below are chosen explicitly where they matter; a restrictive umask inherited from
	 * the caller must not make sandbox mount points untraversable for sandbox root. */
	umask(022);
	if (geteuid() != 0) {
		fprintf(stderr,
			"hutch serve: needs root (it creates namespaces, mounts, cgroups and "
			"network interfaces)\n");
		config_free(&cfg);
		return 1;
	}
	if (mkdir(cfg.data_dir, 0700) < 0 && errno != EEXIST) {
		log_error_errno(-errno, "Failed to create the data dir %s: %m", cfg.data_dir);
		config_free(&cfg);
		return 1;
	}

	int lock_fds[2] = { -1, -1 };
	if (lock_instance(&cfg, lock_fds) < 0) {
		config_free(&cfg);
		return 1;
	}
	raise_file_max();

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct hutch_server srv = { .cfg = &cfg };
	char **mirror_exempt = NULL;
	int rc = 1;
	r = store_open(cfg.data_dir, &srv.store);
	if (r < 0) {
		log_error_errno(r, "Failed to open the store in %s: %m", cfg.data_dir);
		goto out;
	}
	if (bootstrap_key(&cfg, srv.store) < 0)
		goto out;
	char net_dir[4096];
	snprintf(net_dir, sizeof(net_dir), "%s/net", cfg.data_dir);
	mirror_exempt = mirror_cidrs(&cfg);
	struct netpool_config nc = {
		.allowed_cidrs = (const char *const *)mirror_exempt,
		.state_dir = net_dir,
		.prefix = cfg.net_prefix,
		.subnet = cfg.net_subnet,
		.warm = cfg.net_warm,
		.max_slots = MIN(cfg.max_sandboxes + warmpool_capacity(cfg.warm_sandboxes), 16384u),
	};
	r = netpool_new(&nc, &srv.netpool);
	if (r < 0) {
		log_error_errno(r, "Failed to set up sandbox networking: %m");
		goto out;
	}
	r = orchestr_new(&cfg, srv.store, srv.netpool, &srv.orchestr);
	if (r < 0) {
		log_error_errno(r, "Failed to start the orchestrator: %m");
		goto out;
	}
	r = builder_new(&cfg, srv.store, srv.orchestr, &srv.builder);
	if (r < 0) {
		log_error_errno(r, "Failed to start the template builder: %m");
		goto out;
	}
	r = build_builtin_templates(&srv, &set);
	if (r == -ECANCELED)
		rc = 0;
	if (r < 0)
		goto out;
	r = frontdoor_start(&srv, &srv.frontdoor);
	if (r < 0) {
		log_error("Failed to listen on %s:%u for sandboxes", cfg.sandbox_addr,
			  cfg.sandbox_port);
		goto out;
	}
	struct http_server_config hc = {
		.address = cfg.listen_addr,
		.port = cfg.listen_port,
		.router = api_router,
		.userdata = &srv,
		.per_ip_limit = cfg.conns_per_ip,
		.idle_timeout_s = cfg.api_idle_timeout_s,
	};
	r = http_server_start(&hc, &srv.api);
	if (r < 0) {
		log_error("Failed to listen on %s:%u for the API", cfg.listen_addr,
			  cfg.listen_port);
		goto out;
	}
	log_info("hutch %s ready: API http://%s:%u, sandboxes http://%s:%u, data %s", HUTCH_VERSION,
		 cfg.listen_addr, cfg.listen_port, cfg.sandbox_addr, cfg.sandbox_port,
		 cfg.data_dir);

	int sig;
	sigwait(&set, &sig);
	log_info("Received signal %d: stopping every sandbox", sig);
	rc = 0;
out:
	/* Entry points first (their open relays end at once), then the sandboxes. */
	srv.api = http_server_stop(srv.api);
	srv.frontdoor = frontdoor_stop(srv.frontdoor);
	srv.builder = builder_free(srv.builder); /* kills its build sandboxes */
	srv.orchestr = orchestr_free(srv.orchestr, true);
	srv.netpool = netpool_free(srv.netpool);
	srv.store = store_close(srv.store);
	strv_free(mirror_exempt);
	config_free(&cfg);
	close(lock_fds[1]);
	close(lock_fds[0]);
	return rc;
}
