/* envd: the in-sandbox agent, speaking E2B's envd protocol (Connect RPC + /files). */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"
#include "json/jsonx.h"

static int route_options(struct http_req *req)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	if (resp)
		MHD_add_response_header(resp, "Access-Control-Max-Age", "7200");
	return http_queue(req, 204, resp);
}

static int health_begin(struct http_req *req)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	if (resp)
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	return http_queue(req, 204, resp);
}

static const struct http_route health_route = { .begin = health_begin };
static const struct http_route options_route = { .begin = route_options };

static const struct http_route *router(struct http_req *req)
{
	const char *m = req->method, *p = req->path;
	if (streq(m, "OPTIONS"))
		return &options_route;
	if (streq(p, "/health"))
		return streq(m, "GET") || streq(m, "HEAD") ? &health_route : NULL;
	if (streq(p, "/files"))
		return streq(m, "GET") || streq(m, "HEAD") || streq(m, "POST") ? &files_route
									       : NULL;
	if (streq(p, "/init"))
		return streq(m, "POST") ? &init_route : NULL;
	if (streq(p, "/envs"))
		return streq(m, "GET") ? &envs_route : NULL;
	if (streq(p, "/metrics"))
		return streq(m, "GET") ? &metrics_route : NULL;
	if (streq(m, "POST"))
		return rpc_route(req);
	return NULL;
}

static int load_config(const char *file)
{
	json_error_t err;
	_cleanup_json_ json_t *j = json_load_file(file, 0, &err);
	if (!j)
		return log_error_errno(-EINVAL, "Failed to read config '%s': %s (line %d)", file,
				       err.text, err.line);
	const char *msg;
	if (envd_apply_init(j, &msg) < 0)
		return log_error_errno(-EINVAL, "Invalid config '%s': %s", file, msg);
	return 0;
}

static void usage(void)
{
	printf("Usage: envd [--listen ADDR:PORT] [--config FILE] [--log-level LEVEL]\n"
	       "            [--user-cgroup-fd FD]\n"
	       "\n"
	       "The Hutch in-sandbox agent, speaking E2B's envd protocol (reports %s).\n"
	       "  --listen ADDR:PORT   where to listen (default 0.0.0.0:%d)\n"
	       "  --config FILE        JSON with the /init fields: accessToken, envVars,\n"
	       "                       defaultUser, defaultWorkdir\n"
	       "  --log-level LEVEL    debug, info, warn or error (default info)\n"
	       "  --user-cgroup-fd FD  an open cgroup file (tasks or cgroup.procs): each process\n"
	       "                       envd starts writes \"0\" to it, joining that cgroup\n"
	       "  --version            print the envd protocol version and exit\n",
	       ENVD_VERSION, ENVD_DEFAULT_PORT);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "user-cgroup-fd", required_argument, NULL, 'U' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char addr[128] = "0.0.0.0";
	uint16_t port = ENVD_DEFAULT_PORT;
	enum log_level level = LOG_LEVEL_INFO;
	const char *config = NULL;
	int c;

	log_setup("envd", level, true);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 'l':
			if (parse_listen_address(optarg, addr, sizeof(addr), &port) < 0) {
				fprintf(stderr, "envd: invalid --listen '%s' (want ADDR:PORT)\n",
					optarg);
				return 2;
			}
			break;
		case 'c':
			config = optarg;
			break;
		case 'L':
			if (!log_level_parse(optarg, &level)) {
				fprintf(stderr, "envd: invalid --log-level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'U': {
			uint64_t fd;
			if (parse_u64(optarg, &fd) < 0 || fd < 3 || fd > INT_MAX ||
			    fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
				fprintf(stderr, "envd: invalid --user-cgroup-fd '%s'\n", optarg);
				return 2;
			}
			envd.user_cgroup_fd = (int)fd;
			break;
		}
		case 'V':
			printf("%s\n", ENVD_VERSION);
			return 0;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "envd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	log_setup("envd", level, true);

	envd.env_vars = json_object();
	envd.started_usec = now_usec();
	if (config && load_config(config) < 0)
		return 1;

	/* Children get default dispositions back before exec; envd itself must survive
	 * writes to closed sockets and pipes. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	int r = process_table_new(&envd.procs);
	if (r >= 0)
		r = watch_table_new(&envd.watches);
	if (r < 0)
		return log_error_errno(r, "Failed to initialise: %m") < 0;

	struct http_server_config hc = {
		.address = addr,
		.port = port,
		.router = router,
		.cors = true,
		/* Above the front door's idle timeout, so the front door closes first. */
		.idle_timeout_s = 640,
	};
	r = http_server_start(&hc, &envd.http);
	if (r < 0) {
		log_error("Failed to listen on %s:%u", addr, port);
		return 1;
	}
	log_info("envd %s listening on %s:%u", ENVD_VERSION, addr, http_server_port(envd.http));

	int sig;
	sigwait(&set, &sig);
	log_info("Received signal %d, stopping", sig);
	rpc_streams_stop();
	envd.http = http_server_stop(envd.http);
	process_table_free(envd.procs);
	watch_table_free(envd.watches);
	return 0;
}
