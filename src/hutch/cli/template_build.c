/*
 * `hutch template build`: Dockerfile → recipe (parsed here, like the SDK's fromDockerfile), then
 * the SDK's build protocol: POST /v3/templates, for each COPY GET /templates/{id}/files/{hash}
 * and PUT a tar.gz when the server lacks it, POST /v2/templates/{id}/builds/{buildID}, and poll
 * .../status?logsOffset= printing the log with a progress line.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "template/buildctx.h"
#include "template/dockerfile.h"

#define MAX_DOCKERFILE (1u << 20)
#define POLL_MS	       200
#define MAX_POLL_FAILS 10

struct build_opts {
	const char *file, *name, *start_cmd, *ready_cmd, *dir, *data_dir;
	long cpu, memory;
	bool no_cache, dry_run;
	char **build_args;
	size_t n_build_args;
	json_t *tags;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: hutch template build [OPTIONS] [DIR]\n"
	    "Builds a template from a Dockerfile through the API (E2B_API_URL, E2B_API_KEY).\n"
	    "DIR is the build context (default: .); COPY/ADD sources are relative to it and\n"
	    "its .dockerignore applies.\n"
	    "  -f, --file FILE       the Dockerfile (default: DIR/e2b.Dockerfile, DIR/Dockerfile)\n"
	    "  -n, --name NAME       template name, NAME or NAME:TAG (default: DIR's name)\n"
	    "  -t, --tag TAG         an extra tag for this build (repeatable)\n"
	    "      --cpu N           vCPUs of sandboxes from it (1-32)\n"
	    "      --memory MB       memory of sandboxes from it (>= 128, even)\n"
	    "  -c, --start-cmd CMD   start command (overrides CMD/ENTRYPOINT)\n"
	    "      --ready-cmd CMD   ready command, run until it succeeds (overrides HEALTHCHECK)\n"
	    "      --build-arg K=V   value of an ARG (K alone: from the environment; repeatable)\n"
	    "      --no-cache        rebuild every step\n"
	    "      --dry-run         print the recipe JSON (with files hashes) and stop\n"
	    "      --data-dir DIR    where the API key file is (when E2B_API_KEY is unset)\n");
}

/* ---- reading and parsing ---- */

static int read_file(const char *path, char **out, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	char buf[16384];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (sb.len + (size_t)n > MAX_DOCKERFILE)
			return -EFBIG;
		if (strbuf_append(&sb, buf, (size_t)n) < 0)
			return -ENOMEM;
	}
	if (n < 0)
		return negative_errno();
	*len = sb.len;
	*out = sb.data ? strbuf_steal(&sb) : strdup("");
	return *out ? 0 : -ENOMEM;
}

/* The Dockerfile path: -f as given, else DIR/e2b.Dockerfile, else DIR/Dockerfile. */
static char *find_dockerfile(const struct build_opts *o)
{
	if (o->file)
		return strdup(o->file);
	static const char *const names[] = { "e2b.Dockerfile", "Dockerfile" };
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		char *p = NULL;
		if (asprintf(&p, "%s/%s", o->dir, names[i]) < 0)
			return NULL;
		if (access(p, F_OK) == 0)
			return p;
		free(p);
	}
	fprintf(stderr,
		"hutch template build: no Dockerfile: neither %s/e2b.Dockerfile nor %s/Dockerfile "
		"exists (give one with -f)\n",
		o->dir, o->dir);
	return NULL;
}

/* The default name: the context directory's, lowercased, other characters as '-'. */
static char *default_name(const char *dir)
{
	char *real = realpath(dir, NULL);
	if (!real)
		return NULL;
	char *base = strdup(basename(real));
	free(real);
	for (char *c = base; c && *c; c++)
		*c = isalnum((unsigned char)*c) || *c == '_' || *c == '-' ? (char)tolower(*c) : '-';
	if (base && (!*base || streq(base, "-"))) {
		free(base);
		base = strdup("template");
	}
	return base;
}

/*
 * Hashes every COPY/ADD source into its step's filesHash; an ADD whose source is not a single
 * local tar archive becomes a COPY (Docker extracts only archives).
 */
static int hash_sources(const char *file, int ctx_fd, const char *dir, struct dockerfile *df)
{
	struct buildctx_ignore ign;
	int r = buildctx_ignore_load(ctx_fd, &ign);
	if (r < 0) {
		fprintf(stderr, "hutch template build: %s/.dockerignore: %s\n", dir, strerror(-r));
		return 1;
	}
	json_t *steps = json_object_get(df->recipe, "steps");
	int rc = 0;
	for (size_t i = 0; !rc && i < df->n_copies; i++) {
		const struct dockerfile_copy *c = &df->copies[i];
		json_t *step = json_array_get(steps, c->step);
		struct buildctx_files files;
		char hex[65];
		r = buildctx_collect(ctx_fd, c->src, &ign, &files);
		if (r == -ENOENT) {
			fprintf(stderr, "%s:%u: %s source '%s' matches no file in %s\n", file,
				c->line, c->add ? "ADD" : "COPY", c->src, dir);
			rc = 1;
			break;
		}
		if (r >= 0) {
			if (c->add && !(files.n == 1 && S_ISREG(files.v[0].st.st_mode) &&
					buildctx_is_archive(ctx_fd, files.v[0].rel) == 1))
				json_object_set_new(step, "type", json_string("COPY"));
			r = buildctx_hash(ctx_fd, c->src, c->dest, &files, hex);
			buildctx_files_free(&files);
		}
		if (r < 0) {
			fprintf(stderr, "%s:%u: cannot read '%s' in %s: %s\n", file, c->line,
				c->src, dir, strerror(-r));
			rc = 1;
		} else {
			json_object_set_new(step, "filesHash", json_string(hex));
		}
	}
	buildctx_ignore_free(&ign);
	return rc;
}

/* ---- API calls ---- */

/* FROM names a template when the API knows the name (before any ':tag'), else an image. As in
 * Docker, ':latest' is what an untagged name means: the template's default build. */
static int resolve_from(const struct cli_api *api, json_t *recipe, const char *from)
{
	if (strpbrk(from, "/@") || startswith(from, "oci:") || startswith(from, "docker-archive:"))
		return 0;
	_cleanup_free_ char *name = strndup(from, strcspn(from, ":"));
	_cleanup_free_ char *esc = name ? cli_api_escape(name) : NULL;
	_cleanup_free_ char *path = NULL;
	if (!esc || asprintf(&path, "/templates/aliases/%s", esc) < 0)
		return -ENOMEM;
	long st = cli_api_json(api, "GET", path, NULL, NULL);
	if (st < 0)
		return -EIO;
	if (st == 200 || st == 403) {
		const char *tag = from + strlen(name);
		json_object_del(recipe, "fromImage");
		json_object_set_new(recipe, "fromTemplate",
				    json_string(streq(tag, ":latest") ? name : from));
	}
	return 0;
}

static int upload(const char *url, const json_t *headers, int ctx_fd, const char *src)
{
	struct buildctx_ignore ign;
	struct buildctx_files files;
	int r = buildctx_ignore_load(ctx_fd, &ign);
	if (r < 0)
		return r;
	r = buildctx_collect(ctx_fd, src, &ign, &files);
	buildctx_ignore_free(&ign);
	if (r < 0)
		return r;
	_cleanup_fclose_ FILE *tmp = tmpfile();
	if (!tmp) {
		buildctx_files_free(&files);
		return negative_errno();
	}
	r = buildctx_write_tar(ctx_fd, &files, fileno(tmp));
	buildctx_files_free(&files);
	if (r < 0)
		return r;
	struct stat st;
	if (fstat(fileno(tmp), &st) < 0 || fseek(tmp, 0, SEEK_SET) < 0)
		return negative_errno();

	CURL *c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/gzip");
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)headers, k, v) {
		char line[1024];
		if (!json_is_string(v) || strcasecmp(k, "content-length") == 0)
			continue;
		snprintf(line, sizeof(line), "%s: %s", k, json_string_value(v));
		h = curl_slist_append(h, line);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READDATA, tmp);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 3600L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	_cleanup_fclose_ FILE *sink = fopen("/dev/null", "we");
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		fprintf(stderr, "hutch: upload of '%s' failed: %s\n", src, curl_easy_strerror(rc));
		return -EIO;
	}
	if (status < 200 || status >= 300) {
		fprintf(stderr, "hutch: upload of '%s' failed: HTTP %ld\n", src, status);
		return -EIO;
	}
	return 0;
}

/* GET files/{hash}; PUT the tar.gz when the server does not have it. Each hash once. */
static int upload_sources(const struct cli_api *api, const char *tid, int ctx_fd,
			  const struct dockerfile *df)
{
	json_t *steps = json_object_get(df->recipe, "steps");
	json_t *done_hashes = json_object();
	int rc = 0;
	for (size_t i = 0; !rc && i < df->n_copies; i++) {
		const char *hash = json_string_value(
		    json_object_get(json_array_get(steps, df->copies[i].step), "filesHash"));
		if (!hash || json_object_get(done_hashes, hash))
			continue;
		json_object_set_new(done_hashes, hash, json_true());
		_cleanup_free_ char *path = NULL, *esc = cli_api_escape(tid);
		if (!esc || asprintf(&path, "/templates/%s/files/%s", esc, hash) < 0) {
			rc = 1;
			break;
		}
		json_t *resp = NULL;
		long st = cli_api_json(api, "GET", path, NULL, &resp);
		if (st < 200 || st >= 300) {
			rc = cli_api_error(st, resp, "upload link");
		} else if (json_is_false(json_object_get(resp, "present"))) {
			const char *url = json_string_value(json_object_get(resp, "url"));
			_cleanup_free_ char *full = NULL;
			if (!url) {
				fprintf(stderr, "hutch: the API gave no upload URL for '%s'\n",
					df->copies[i].src);
				rc = 1;
			} else if (url[0] == '/' && asprintf(&full, "%s%s", api->url, url) < 0) {
				rc = 1;
			} else {
				rc = upload(full ? full : url, json_object_get(resp, "headers"),
					    ctx_fd, df->copies[i].src) < 0;
				if (!rc)
					printf("Uploaded '%s'\n", df->copies[i].src);
			}
		} else {
			printf("Skipping upload of '%s', already cached\n", df->copies[i].src);
		}
		json_decref(resp);
	}
	json_decref(done_hashes);
	fflush(stdout);
	return rc;
}

/* ---- progress ---- */

struct progress {
	bool tty;
	uint64_t t0;
	size_t nsteps; /* recipe steps; log step 1..nsteps, 0 = base, nsteps + 1 = finalize */
	long step;
	bool *cached;
	size_t ncached;
	char last[256];
	bool drawn;
};

static double elapsed(const struct progress *pg)
{
	return (double)(now_usec() - pg->t0) / 1e6;
}

/* The step of a log entry: its "step" field ("base", "finalize", a number), else "[N/M]" or
 * "step N" in the message; -1 when unknown. */
static long entry_step(const struct progress *pg, const json_t *e)
{
	json_t *s = json_object_get(e, "step");
	if (json_is_integer(s))
		return (long)json_integer_value(s);
	const char *t = json_string_value(s);
	if (streq(t, "base"))
		return 0;
	if (streq(t, "finalize"))
		return (long)pg->nsteps + 1;
	if (t && isdigit((unsigned char)*t))
		return strtol(t, NULL, 10);
	const char *m = json_string_value(json_object_get(e, "message"));
	for (const char *p = m; p && *p; p++) {
		if (*p == '[' && isdigit((unsigned char)p[1])) {
			char *end;
			long n = strtol(p + 1, &end, 10);
			if (*end == '/' || *end == ']')
				return n;
		}
		if (strncasecmp(p, "step ", 5) == 0 && isdigit((unsigned char)p[5]))
			return strtol(p + 5, NULL, 10);
	}
	return -1;
}

static void step_label(const struct progress *pg, long step, char *buf, size_t size)
{
	if (step < 0)
		snprintf(buf, size, "%s", "");
	else if (step == 0)
		snprintf(buf, size, "base");
	else if ((size_t)step > pg->nsteps)
		snprintf(buf, size, "finalize");
	else
		snprintf(buf, size, "%ld/%zu", step, pg->nsteps);
}

static void clear_status(struct progress *pg)
{
	if (pg->tty && pg->drawn)
		fputs("\r\033[K", stdout);
	pg->drawn = false;
}

static void draw_status(struct progress *pg)
{
	if (!pg->tty)
		return;
	struct winsize ws;
	int cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
	char label[32], line[512];
	step_label(pg, pg->step, label, sizeof(label));
	int n = snprintf(line, sizeof(line), "[%s] %zu cached %.1fs  %s", *label ? label : "...",
			 pg->ncached, elapsed(pg), pg->last);
	if (n >= cols)
		line[cols - 1] = 0;
	clear_status(pg);
	printf("\033[1m%s\033[0m", line);
	fflush(stdout);
	pg->drawn = true;
}

static void log_entry(struct progress *pg, const json_t *e)
{
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *level = json_string_value(json_object_get(e, "level"));
	if (!msg)
		return;
	long step = entry_step(pg, e);
	if (step >= 0) {
		pg->step = step;
		/* Layer steps only: a cached base or finalize step is not one of the N steps. */
		if (step >= 1 && (size_t)step <= pg->nsteps && strcasestr(msg, "cached") &&
		    !pg->cached[step]) {
			pg->cached[step] = true;
			pg->ncached++;
		}
	}
	char label[32];
	step_label(pg, step, label, sizeof(label));
	clear_status(pg);
	printf("%7.1fs %-9s %s%s%s\n", elapsed(pg), label,
	       level && (streq(level, "error") || streq(level, "warn")) ? level : "",
	       level && (streq(level, "error") || streq(level, "warn")) ? ": " : "", msg);
	snprintf(pg->last, sizeof(pg->last), "%s", msg);
	for (char *c = pg->last; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
	draw_status(pg);
}

/* What step N of the recipe was, for error messages. */
static void describe_step(const json_t *recipe, long step, char *buf, size_t size)
{
	json_t *s =
	    step >= 1 ? json_array_get(json_object_get(recipe, "steps"), (size_t)step - 1) : NULL;
	const char *type = json_string_value(json_object_get(s, "type"));
	const char *arg = json_string_value(json_array_get(json_object_get(s, "args"), 0));
	if (type)
		snprintf(buf, size, " (%s %.60s%s)", type, arg ? arg : "",
			 arg && strlen(arg) > 60 ? "..." : "");
	else
		buf[0] = 0;
}

static int wait_build(const struct cli_api *api, const char *tid, const char *bid,
		      const json_t *recipe, const char *name)
{
	struct progress pg = { .tty = isatty(STDOUT_FILENO) && !streq(getenv("TERM"), "dumb"),
			       .t0 = now_usec(),
			       .step = -1 };
	pg.nsteps = json_array_size(json_object_get(recipe, "steps"));
	pg.cached = calloc(pg.nsteps + 2, sizeof(bool));
	_cleanup_free_ char *et = cli_api_escape(tid), *eb = cli_api_escape(bid);
	if (!pg.cached || !et || !eb) {
		free(pg.cached);
		return 1;
	}
	size_t offset = 0;
	int fails = 0, rc = -1;
	bool finished = false;
	json_t *final = NULL;
	while (rc < 0) {
		char path[1024];
		snprintf(path, sizeof(path), "/templates/%s/builds/%s/status?logsOffset=%zu", et,
			 eb, offset);
		json_t *resp = NULL;
		long st = cli_api_json(api, "GET", path, NULL, &resp);
		if (st != 200) {
			if (st >= 400 && st < 500) {
				clear_status(&pg);
				rc = cli_api_error(st, resp, "build status");
			} else if (++fails >= MAX_POLL_FAILS) {
				clear_status(&pg);
				rc = cli_api_error(st, resp, "build status");
			}
			json_decref(resp);
			usleep(POLL_MS * 1000 * (rc < 0 ? fails : 0));
			continue;
		}
		fails = 0;
		json_t *entries = json_object_get(resp, "logEntries");
		size_t i;
		json_t *e;
		json_array_foreach (entries, i, e)
			log_entry(&pg, e);
		offset += json_array_size(entries);
		const char *status = json_string_value(json_object_get(resp, "status"));
		if (finished || streq(status, "ready") || streq(status, "error")) {
			if (!final)
				final = json_incref(resp);
			finished = true;
			/* Drain what is left of the log, as the SDK does. */
			if (json_array_size(entries) == 0)
				rc = 0;
		} else if (!streq(status, "building") && !streq(status, "waiting")) {
			clear_status(&pg);
			fprintf(stderr, "hutch: build status '%s' is not one the SDK knows\n",
				status ? status : "(none)");
			rc = 1;
		} else {
			draw_status(&pg);
		}
		json_decref(resp);
		if (rc < 0)
			usleep(POLL_MS * 1000);
	}
	clear_status(&pg);
	fflush(stdout);
	if (rc == 0 && streq(json_string_value(json_object_get(final, "status")), "ready")) {
		printf("Built template %s (%s, build %s) in %.1fs: %zu of %zu steps cached\n", name,
		       tid, bid, elapsed(&pg), pg.ncached, pg.nsteps);
	} else if (rc == 0) {
		json_t *reason = json_object_get(final, "reason");
		json_t *js = json_pack("{s:O?}", "step", json_object_get(reason, "step"));
		long step = js && json_object_get(js, "step") ? entry_step(&pg, js) : -1;
		json_decref(js);
		char label[32], what[128];
		step_label(&pg, step, label, sizeof(label));
		describe_step(recipe, step, what, sizeof(what));
		const char *msg = json_string_value(json_object_get(reason, "message"));
		fprintf(stderr, "hutch: build of %s failed%s%s%s: %s\n", name,
			*label ? " at step " : "", label, what, msg ? msg : "unknown error");
		/* The tail of the log, on stderr: stdout may have gone to a file. */
		json_t *tail = json_object_get(reason, "logEntries");
		size_t n = json_array_size(tail);
		for (size_t i = n > 10 ? n - 10 : 0; i < n; i++) {
			const char *m =
			    json_string_value(json_object_get(json_array_get(tail, i), "message"));
			if (m)
				fprintf(stderr, "  | %s\n", m);
		}
		rc = 1;
	}
	json_decref(final);
	free(pg.cached);
	return rc;
}

/* ---- the verb ---- */

static int parse_opts(int argc, char **argv, struct build_opts *o)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "name", required_argument, NULL, 'n' },
		{ "tag", required_argument, NULL, 't' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "memory", required_argument, NULL, 'M' },
		{ "start-cmd", required_argument, NULL, 'c' },
		{ "ready-cmd", required_argument, NULL, 'R' },
		{ "build-arg", required_argument, NULL, 'a' },
		{ "no-cache", no_argument, NULL, 'N' },
		{ "dry-run", no_argument, NULL, 'D' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	uint64_t v;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:n:t:c:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'f':
			o->file = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'c':
			o->start_cmd = optarg;
			break;
		case 'R':
			o->ready_cmd = optarg;
			break;
		case 'd':
			o->data_dir = optarg;
			break;
		case 'N':
			o->no_cache = true;
			break;
		case 'D':
			o->dry_run = true;
			break;
		case 't':
			if (!*optarg || strpbrk(optarg, " /:")) {
				fprintf(stderr, "hutch template build: bad tag '%s'\n", optarg);
				return 2;
			}
			json_array_append_new(o->tags, json_string(optarg));
			break;
		case 'C':
			if (parse_u64(optarg, &v) < 0 || v < 1 || v > 32) {
				fprintf(stderr, "hutch template build: --cpu takes 1 to 32\n");
				return 2;
			}
			o->cpu = (long)v;
			break;
		case 'M':
			if (parse_u64(optarg, &v) < 0 || v < 128 || v > (1u << 20) || v % 2) {
				fprintf(stderr,
					"hutch template build: --memory takes an even number "
					"of MiB, at least 128\n");
				return 2;
			}
			o->memory = (long)v;
			break;
		case 'a': {
			char **nb = realloc(o->build_args, (o->n_build_args + 1) * sizeof(*nb));
			if (!nb)
				return 1;
			o->build_args = nb;
			const char *val = strchr(optarg, '=') ? NULL : getenv(optarg);
			if (optarg[0] == '=' || !*optarg) {
				fprintf(stderr,
					"hutch template build: --build-arg takes KEY=VALUE\n");
				return 2;
			}
			if (strchr(optarg, '='))
				nb[o->n_build_args++] = strdup(optarg);
			else if (val && asprintf(&nb[o->n_build_args], "%s=%s", optarg, val) >= 0)
				o->n_build_args++;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "hutch template build: give one context directory\n");
		return 2;
	}
	o->dir = optind < argc ? argv[optind] : ".";
	if (o->name && (!*o->name || strpbrk(o->name, " \t/") || strlen(o->name) > 128)) {
		fprintf(stderr, "hutch template build: bad name '%s'\n", o->name);
		return 2;
	}
	return -1;
}

static int build(struct build_opts *o)
{
	_cleanup_close_ int ctx_fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx_fd < 0) {
		fprintf(stderr, "hutch template build: context %s: %s\n", o->dir, strerror(errno));
		return 1;
	}
	_cleanup_free_ char *file = find_dockerfile(o), *text = NULL;
	if (!file)
		return 1;
	size_t len = 0;
	int r = read_file(file, &text, &len);
	if (r < 0) {
		fprintf(stderr, "hutch template build: %s: %s\n", file,
			r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		return 1;
	}
	struct dockerfile *df = NULL;
	struct dockerfile_error err;
	r = dockerfile_parse(text, len, o->build_args, o->n_build_args, &df, &err);
	if (r < 0) {
		if (err.line)
			fprintf(stderr, "%s:%u: %s\n", file, err.line, err.message);
		else
			fprintf(stderr, "%s: %s\n", file, err.message);
		return 1;
	}
	for (size_t i = 0; i < df->n_warnings; i++)
		fprintf(stderr, "%s: warning: %s\n", file, df->warnings[i]);
	int rc = hash_sources(file, ctx_fd, o->dir, df);
	json_t *recipe = df->recipe;
	if (!rc && o->start_cmd)
		json_object_set_new(recipe, "startCmd", json_string(o->start_cmd));
	if (!rc && o->ready_cmd)
		json_object_set_new(recipe, "readyCmd", json_string(o->ready_cmd));
	if (!rc && o->no_cache)
		json_object_set_new(recipe, "force", json_true());
	_cleanup_free_ char *name = o->name ? strdup(o->name) : default_name(o->dir);
	if (!rc && !name)
		rc = 1;
	if (!rc && o->dry_run) {
		json_dumpf(recipe, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	if (rc || o->dry_run) {
		dockerfile_free(df);
		return rc;
	}

	_cleanup_free_ char *url = NULL, *key = NULL;
	if (cli_api_target(o->data_dir, "hutch", &url, &key) < 0) {
		dockerfile_free(df);
		return 1;
	}
	struct cli_api api = { .url = url, .key = key };
	json_t *resp = NULL, *req = json_pack("{s:s}", "name", name);
	if (json_array_size(o->tags))
		json_object_set(req, "tags", o->tags);
	if (o->cpu)
		json_object_set_new(req, "cpuCount", json_integer(o->cpu));
	if (o->memory)
		json_object_set_new(req, "memoryMB", json_integer(o->memory));
	rc = resolve_from(&api, recipe, df->from) < 0;
	long st = rc ? -1 : cli_api_json(&api, "POST", "/v3/templates", req, &resp);
	json_decref(req);
	const char *tid = json_string_value(json_object_get(resp, "templateID"));
	const char *bid = json_string_value(json_object_get(resp, "buildID"));
	if (!rc && (st < 200 || st >= 300 || !tid || !bid))
		rc = cli_api_error(st, resp, "template create");
	if (!rc) {
		printf("Building template %s (%s, build %s) from %s\n", name, tid, bid, df->from);
		fflush(stdout);
		rc = upload_sources(&api, tid, ctx_fd, df);
	}
	if (!rc) {
		_cleanup_free_ char *path = NULL, *et = cli_api_escape(tid),
				    *eb = cli_api_escape(bid);
		json_t *bresp = NULL;
		if (!et || !eb || asprintf(&path, "/v2/templates/%s/builds/%s", et, eb) < 0)
			rc = 1;
		st = rc ? -1 : cli_api_json(&api, "POST", path, recipe, &bresp);
		if (!rc && (st < 200 || st >= 300))
			rc = cli_api_error(st, bresp, "build start");
		json_decref(bresp);
	}
	if (!rc)
		rc = wait_build(&api, tid, bid, recipe, name);
	json_decref(resp);
	dockerfile_free(df);
	return rc;
}

int cli_template_build(int argc, char **argv)
{
	struct build_opts o = { .tags = json_array() };
	int rc = parse_opts(argc, argv, &o);
	if (rc < 0)
		rc = build(&o);
	for (size_t i = 0; i < o.n_build_args; i++)
		free(o.build_args[i]);
	free(o.build_args);
	json_decref(o.tags);
	return rc;
}
