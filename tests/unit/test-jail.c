/*
 * The jail runtime, end to end: a sandbox from a busybox root (two layers), envd inside, checks
 * of the isolation from inside (over envd's Connect API, reached through the sandbox's network
 * namespace) and from the host, then destroy() leaving nothing behind.
 *
 * Needs root, user namespaces, /bin/busybox and the build's envd-bundle and hutch-init
 * (HUTCH_BUILD=<build dir>, or found relative to this binary); skips otherwise. The binary is
 * also the shim: `test-jail shim RUN_DIR` runs jail_shim_main. `test-jail bench N` prints
 * start/destroy times.
 */
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "tap.h"
#include "common/macro.h"
#include "common/util.h"
#include "json/jsonx.h"
#include "runtime/runtime.h"
#include "runtime/jail/jail.h"

#define TOKEN "test-token-0123456789"

static char tmp[256], run_dir[512], netns_name[64], netns_path[128], build[1024];
static char layer0[512], layer1[512], bundle[1100], init_bin[1100], cgparent[64];
static const char *layers[3];

static int sh(const char *fmt, ...) _printf_(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool find_build(void)
{
	const char *env = getenv("HUTCH_BUILD");
	if (env) {
		snprintf(build, sizeof(build), "%s", env);
	} else {
		char exe[900];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return false;
		exe[n] = 0;
		snprintf(build, sizeof(build), "%s/../..", dirname(exe)); /* build/tests/unit */
	}
	snprintf(bundle, sizeof(bundle), "%s/envd-bundle", build);
	snprintf(init_bin, sizeof(init_bin), "%s/src/sandbox-tools/hutch-init", build);
	return access(bundle, F_OK) == 0 && access(init_bin, X_OK) == 0;
}

static bool make_rootfs(void)
{
	snprintf(layer0, sizeof(layer0), "%s/layer0", tmp);
	snprintf(layer1, sizeof(layer1), "%s/layer1", tmp);
	/* Owned by host root, like a template layer. */
	return sh("set -e; mkdir -p %s/bin %s/etc %s/root %s/tmp %s/proc %s/sys %s/dev; "
		  "chmod 1777 %s/tmp; cp /bin/busybox %s/bin/; "
		  "for a in $(/bin/busybox --list); do [ $a = busybox ] || ln -sf busybox "
		  "%s/bin/$a; done; "
		  "printf "
		  "'root:x:0:0:root:/root:/bin/sh\\nuser:x:1000:1000::/home/user:/bin/sh\\n' "
		  "> %s/etc/passwd; printf 'root:x:0:\\ntty:x:5:\\nuser:x:1000:\\n' > "
		  "%s/etc/group; "
		  "echo lower > %s/etc/which; mkdir -p %s/etc; echo upper > %s/etc/which",
		  layer0, layer0, layer0, layer0, layer0, layer0, layer0, layer0, layer0, layer0,
		  layer0, layer0, layer0, layer1, layer1) == 0;
}

/* A socket connected to 127.0.0.1:port inside the sandbox's network namespace. */
struct conn_arg {
	int fd;
};

static void *connect_thread(void *p)
{
	struct conn_arg *a = p;
	a->fd = -1;
	int ns = open(netns_path, O_RDONLY | O_CLOEXEC);
	if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
		return NULL;
	close(ns);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(49983),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		a->fd = fd;
	else if (fd >= 0)
		close(fd);
	return NULL;
}

static int connect_envd(void)
{
	struct conn_arg a;
	pthread_t t;
	if (pthread_create(&t, NULL, connect_thread, &a) != 0)
		return -1;
	pthread_join(t, NULL);
	return a.fd;
}

/* Sends a request and reads the whole response (Connection: close). Caller frees. */
static char *http(const char *req, size_t req_len, size_t *resp_len)
{
	_cleanup_close_ int fd = connect_envd();
	if (fd < 0 || write_all(fd, req, req_len) < 0)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (ssize_t n; buf && (n = read(fd, buf + len, cap - len - 1)) > 0;) {
		len += (size_t)n;
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
	}
	if (buf)
		buf[len] = 0;
	*resp_len = len;
	return buf;
}

/* De-chunks an HTTP/1.1 body in place; returns its length. */
static size_t dechunk(char *body, size_t len)
{
	size_t in = 0, out = 0;
	while (in < len) {
		char *end;
		unsigned long n = strtoul(body + in, &end, 16);
		char *crlf = strstr(end, "\r\n");
		if (!crlf || n == 0)
			break;
		in = (size_t)(crlf + 2 - body);
		if (in + n > len)
			n = len - in;
		memmove(body + out, body + in, n);
		out += n;
		in += n + 2;
	}
	return out;
}

/* Runs `/bin/sh -c script` through envd's process.Process/Start; returns stdout. */
static char *run_in_sandbox(const char *script)
{
	_cleanup_json_ json_t *msg =
	    json_pack("{s:{s:s,s:[s,s]}}", "process", "cmd", "/bin/sh", "args", "-c", script);
	_cleanup_free_ char *body = json_dumps(msg, JSON_COMPACT);
	size_t blen = strlen(body);
	char head[512];
	int hl = snprintf(head, sizeof(head),
			  "POST /process.Process/Start HTTP/1.1\r\nHost: sandbox\r\n"
			  "Content-Type: application/connect+json\r\nX-Access-Token: " TOKEN "\r\n"
			  "Connection: close\r\nContent-Length: %zu\r\n\r\n",
			  blen + 5);
	size_t total = (size_t)hl + 5 + blen;
	_cleanup_free_ char *req = malloc(total);
	memcpy(req, head, (size_t)hl);
	unsigned char env[5] = { 0, (unsigned char)(blen >> 24), (unsigned char)(blen >> 16),
				 (unsigned char)(blen >> 8), (unsigned char)blen };
	memcpy(req + hl, env, 5);
	memcpy(req + hl + 5, body, blen);
	size_t rlen;
	_cleanup_free_ char *resp = http(req, total, &rlen);
	if (!resp)
		return NULL;
	char *b = strstr(resp, "\r\n\r\n");
	if (!b)
		return NULL;
	b += 4;
	size_t len = rlen - (size_t)(b - resp);
	if (strcasestr(resp, "transfer-encoding: chunked"))
		len = dechunk(b, len);
	char *out = calloc(1, 1);
	size_t out_len = 0;
	for (size_t i = 0; i + 5 <= len;) {
		unsigned char *e = (unsigned char *)b + i;
		size_t n = (size_t)e[1] << 24 | (size_t)e[2] << 16 | (size_t)e[3] << 8 | e[4];
		if (i + 5 + n > len)
			break;
		json_error_t err;
		_cleanup_json_ json_t *j = json_loadb(b + i + 5, n, 0, &err);
		json_t *data =
		    json_object_get(json_object_get(json_object_get(j, "event"), "data"), "stdout");
		unsigned char *bytes = NULL;
		size_t blen2 = 0;
		if (data && json_is_string(data)) {
			json_t *holder = json_object_get(json_object_get(j, "event"), "data");
			if (jsonx_get_bytes(holder, "stdout", NULL, &bytes, &blen2) == 0) {
				out = realloc(out, out_len + blen2 + 1);
				memcpy(out + out_len, bytes, blen2);
				out_len += blen2;
				out[out_len] = 0;
				free(bytes);
			}
		}
		if (e[0] & 2) {
			const char *m = json_string_value(
			    json_object_get(json_object_get(j, "error"), "message"));
			if (m)
				diag("end of stream error: %s", m);
		}
		i += 5 + n;
	}
	return out;
}

static bool has_line(const char *text, const char *line)
{
	size_t l = strlen(line);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, line, l) == 0 && (p[l] == '\n' || p[l] == 0))
			return true;
	return false;
}

/* The `ps` line lists only what runs in the sandbox: init, envd (ld.so) and the script. */
static bool only_sandbox_processes(const char *out)
{
	static const char *const allowed[] = { "init", "ld.so", "envd", "ps",
					       "sh",   "sort",	"tail", "tr" };
	const char *line = strstr(out, "init ");
	if (!line)
		return false;
	_cleanup_free_ char *copy = strndup(line, strcspn(line, "\n"));
	unsigned n = 0;
	char *save = NULL;
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save), n++) {
		bool known = false;
		for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
			known |= streq(w, allowed[i]);
		if (!known)
			return false;
	}
	return n >= 3 && n <= 8;
}

static void fill_spec(struct sandbox_spec *s, const char *id, const char *rd)
{
	/* HUTCH_TEST_ROOTFS: a real template root instead (for the bench). */
	const char *rootfs = getenv("HUTCH_TEST_ROOTFS");
	layers[0] = rootfs ? rootfs : layer0;
	layers[1] = rootfs ? NULL : layer1;
	layers[2] = NULL;
	*s = (struct sandbox_spec){
		.id = id,
		.run_dir = rd,
		.layers = layers,
		.netns_path = netns_path,
		.uid_base = 1000000000u + (unsigned)(getpid() % 1000) * SANDBOX_UID_COUNT,
		.cpu_count = 1,
		.memory_mb = 256,
		.disk_mb = 64,
		.pids_max = 128,
		.pids_reserve = 32,
		.hostname = "sbx-test",
		.envd_bundle = bundle,
		.init_path = init_bin,
		.envd_config = "{\"accessToken\":\"" TOKEN "\",\"defaultUser\":\"root\"}",
		.start_timeout_ms = 5000,
		.resolv_conf = "nameserver 192.0.2.53\n",
		.shim_path = "/proc/self/exe",
		.cgroup_parent = cgparent,
	};
}

/* Neither gone nor a zombie (this machine's pid 1 reaps orphans only now and then). */
static bool running(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static bool mountinfo_mentions(const char *s)
{
	_cleanup_free_ char *text = NULL;
	size_t n = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	ssize_t r = getdelim(&text, &n, 0, f);
	fclose(f);
	return r > 0 && strstr(text, s);
}

static bool loop_backs(const char *dir)
{
	return sh("cat /sys/block/loop*/loop/backing_file 2>/dev/null | grep -qF '%s'", dir) == 0;
}

static void test_seccomp_list(void)
{
	char *err = NULL;
	int n = jail_seccomp_check(&err);
	ok(n > 250, "seccomp allow-list parses (%d rules)%s%s", n, err ? ": " : "", err ? err : "");
	free(err);
}

static void test_sandbox(void)
{
	struct sandbox_spec spec;
	char id[64];
	snprintf(id, sizeof(id), "test-%d", (int)getpid());
	fill_spec(&spec, id, run_dir);
	struct runtime_sandbox *rs = NULL;
	uint64_t t0 = now_usec();
	int r = jail_runtime_ops.start(&spec, &rs);
	uint64_t dt = now_usec() - t0;
	if (!ok(r == 0 && rs, "start() (%.1f ms)", dt / 1000.0)) {
		sh("cat %s/shim.log | tail -20 | sed 's/^/# /'", run_dir);
		return;
	}
	ok(jail_runtime_ops.alive(rs), "alive() after start");

	size_t len;
	const char health[] = "GET /health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n";
	_cleanup_free_ char *resp = http(health, sizeof(health) - 1, &len);
	ok(resp && startswith(resp, "HTTP/1.1 204"), "GET /health through the netns answers 204");

	_cleanup_free_ char *out = run_in_sandbox(
	    "id -u; grep CapEff /proc/self/status; hostname; cat /etc/hostname; cat /etc/which;"
	    "echo inside > /created-inside; "
	    "ps -o comm | tail -n +2 | sort | tr '\\n' ' '; echo; "
	    "echo MASKED=$(cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c); "
	    "(echo evil > /proc/sys/kernel/hostname) 2>/dev/null && echo HOSTW_OK || echo "
	    "HOSTW_FAIL; "
	    "mknod /tmp/mem c 1 1 2>/dev/null && echo MKNOD_OK || echo MKNOD_FAIL; "
	    "unshare -U true 2>/dev/null && echo UNSHARE_OK || echo UNSHARE_FAIL; "
	    "mount -t tmpfs x /mnt 2>/dev/null && echo MOUNT_OK || echo MOUNT_FAIL; "
	    "cat /etc/resolv.conf; ls -ld / | cut -c1-30; stat -c 'owner=%u' /bin/busybox; "
	    "ls /.hutch; cat /.hutch/envd.json >/dev/null 2>&1 && echo CONFIG_READ; "
	    "touch /.hutch/x 2>/dev/null && echo HUTCH_RW || echo HUTCH_RO; "
	    "ls /sys/class/net | tr '\\n' ' '; echo");
	ok(out != NULL, "process.Start ran a command");
	if (!out)
		out = strdup("");
	diag("inside:\n%s", out);
	ok(has_line(out, "0"), "uid 0 inside");
	ok(has_line(out, "CapEff:\t00000000a80425fb"), "capabilities are Docker's default set");
	ok(has_line(out, "sbx-test"), "hostname and /etc/hostname set");
	ok(has_line(out, "upper"), "layers stack in order (last layer on top)");
	ok(only_sandbox_processes(out), "only init, envd and the command's processes are visible");
	ok(has_line(out, "MASKED=0"), "/proc/kcore, keys, timer_list are masked (0 bytes)");
	ok(has_line(out, "HOSTW_FAIL"), "/proc/sys is read-only");
	ok(has_line(out, "MKNOD_FAIL"), "mknod of a device fails");
	ok(has_line(out, "UNSHARE_FAIL"), "unshare -U fails");
	ok(has_line(out, "MOUNT_FAIL"), "mount fails");
	ok(has_line(out, "nameserver 192.0.2.53"), "resolv.conf written");
	ok(has_line(out, "owner=0"), "template files (host root) appear owned by root inside");
	ok(strstr(out, "CONFIG_READ") != NULL, "root reads /.hutch/envd.json");
	ok(has_line(out, "HUTCH_RO"), "/.hutch is read-only");
	ok(strstr(out, "lo") != NULL, "/sys shows the sandbox's network namespace");

	/* hutch-init restarts envd when it dies. */
	free(run_in_sandbox("kill -9 $(pidof ld.so envd)"));
	bool back = false;
	for (int i = 0; i < 300 && !back; i++) {
		usleep(10000);
		_cleanup_free_ char *h = http(health, sizeof(health) - 1, &len);
		back = h && startswith(h, "HTTP/1.1 204");
	}
	ok(back && sh("grep -q 'envd killed by a signal' %s/shim.log", run_dir) == 0,
	   "init restarts envd after it is killed");

	/* The restarted envd still puts what it starts in the "user" cgroup (relative to the
	 * cgroup namespace of init: the sandbox's cgroup on v1, its leaf "envd" on v2), and stays
	 * outside it itself. */
	_cleanup_free_ char *cgs = run_in_sandbox(
	    "echo SELF $(grep -m1 -E ':pids:|^0::' /proc/self/cgroup); "
	    "echo ENVD $(grep -m1 -E ':pids:|^0::' /proc/$(pidof ld.so envd)/cgroup)");
	diag("cgroups:\n%s", cgs ? cgs : "(none)");
	ok(cgs && (strstr(cgs, "SELF 0::/../user\n") || strstr(cgs, ":pids:/user\n")),
	   "a process envd starts is in the user cgroup");
	ok(cgs && (strstr(cgs, "ENVD 0::/\n") || strstr(cgs, ":pids:/\n")),
	   "envd is not in the user cgroup");

	/* From the host: ownership of what root inside wrote (upper layer, via the shim's
	 * mount namespace, where the disk image is mounted). */
	pid_t shim;
	uint64_t st0;
	_cleanup_close_ int dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(jail_pidfile_read(dfd, JAIL_SHIM_PID, &shim, &st0) == 0, "shim.pid recorded");
	char path[1024];
	snprintf(path, sizeof(path), "/proc/%d/root%s/disk/upper/created-inside", (int)shim,
		 run_dir);
	struct stat st;
	ok(stat(path, &st) == 0 && st.st_uid == spec.uid_base && st.st_gid == spec.uid_base,
	   "a file made by root inside is owned by uid_base on the host");
	struct stat lst;
	snprintf(path, sizeof(path), "%s/etc/which", layer0);
	ok(stat(path, &lst) == 0 && lst.st_uid == 0, "the lower layer is untouched");

	struct jail_cgroup cg;
	jail_cgroup_init(&cg, cgparent, id);
	_cleanup_free_ char *mem = NULL, *pids = NULL, *user_pids = NULL;
	jail_cgroup_read(&cg, false, cg.v2 ? "memory.max" : "memory.limit_in_bytes", &mem);
	jail_cgroup_read(&cg, false, "pids.max", &pids);
	jail_cgroup_read(&cg, true, "pids.max", &user_pids);
	is_str(mem, "268435456", "memory limit set in the cgroup");
	is_str(pids, "160", "pids limit of the sandbox: the user's and envd's reserve");
	is_str(user_pids, "128", "pids limit of the processes envd starts");

	struct sandbox_stats ss;
	r = jail_runtime_ops.stats(rs, &ss);
	ok(r == 0 && ss.mem_used > 0 && ss.mem_total == 268435456 && ss.cpu_count == 1,
	   "stats(): memory %llu of %llu, cpu %llu us", (unsigned long long)ss.mem_used,
	   (unsigned long long)ss.mem_total, (unsigned long long)ss.cpu_usage_usec);
	ok(ss.disk_total > 50u << 20 && ss.disk_total <= 64u << 20 && ss.disk_used > 0,
	   "stats(): disk %llu of %llu", (unsigned long long)ss.disk_used,
	   (unsigned long long)ss.disk_total);

	struct runtime_sandbox *again = NULL;
	ok(jail_runtime_ops.attach(run_dir, &again) == 0 && jail_runtime_ops.alive(again),
	   "attach() finds the running sandbox");
	if (again)
		jail_runtime_ops.release(again);

	pid_t init_pid = 0;
	ok(jail_pidfile_read(dfd, JAIL_INIT_PID, &init_pid, &st0) == 0 && init_pid > 1,
	   "init.pid recorded");
	t0 = now_usec();
	r = jail_runtime_ops.destroy(rs);
	dt = now_usec() - t0;
	ok(r == 0, "destroy() (%.1f ms)", dt / 1000.0);
	ok(access(run_dir, F_OK) < 0, "RUN_DIR removed");
	bool gone = false;
	for (int i = 0; i < 100 && !gone; i++) { /* the shim's zombie waits for host init */
		gone = !running(init_pid) && !running(shim);
		if (!gone)
			usleep(10000);
	}
	ok(gone, "init and shim are gone");
	if (!gone)
		diag("init %d: %d, shim %d: %d", (int)init_pid, running(init_pid), (int)shim,
		     running(shim));
	ok(access(cg.dirs[0], F_OK) < 0, "cgroup directory removed");
	ok(!mountinfo_mentions(run_dir), "no mount under RUN_DIR");
	ok(!loop_backs(run_dir), "no loop device left on the disk image");
	jail_cgroup_done(&cg);
}

static void test_failure(void)
{
	struct sandbox_spec spec;
	char id[64], rd[600];
	snprintf(id, sizeof(id), "test-fail-%d", (int)getpid());
	snprintf(rd, sizeof(rd), "%s/run-fail", tmp);
	mkdir(rd, 0700);
	fill_spec(&spec, id, rd);
	spec.envd_bundle = "/nonexistent/bundle";
	spec.disk_mb = 0;
	struct runtime_sandbox *rs = NULL;
	int r = jail_runtime_ops.start(&spec, &rs);
	ok(r < 0 && !rs, "start() fails cleanly with a missing envd bundle");
	struct jail_cgroup cg;
	jail_cgroup_init(&cg, cgparent, id);
	ok(access(cg.dirs[0], F_OK) < 0, "no cgroup left after a failed start");
	jail_cgroup_done(&cg);
	sh("rm -rf %s", rd);
}

/* A daemon that crashed: its sandboxes run on with nobody holding them. The sweep removes those
 * not kept (shim, cgroup, RUN_DIR, disk) and what no sandbox accounts for; kept ones live on. */
static void test_sweep(void)
{
	char root[600], rd_a[700], rd_b[700], id_a[64], id_b[64];
	snprintf(root, sizeof(root), "%s/runs", tmp);
	snprintf(id_a, sizeof(id_a), "sweep-a-%d", (int)getpid());
	snprintf(id_b, sizeof(id_b), "sweep-b-%d", (int)getpid());
	snprintf(rd_a, sizeof(rd_a), "%s/%s", root, id_a);
	snprintf(rd_b, sizeof(rd_b), "%s/%s", root, id_b);
	mkdir(root, 0700);
	mkdir(rd_a, 0700);
	mkdir(rd_b, 0700);
	struct sandbox_spec sa, sb;
	fill_spec(&sa, id_a, rd_a);
	fill_spec(&sb, id_b, rd_b);
	sb.uid_base += SANDBOX_UID_COUNT;
	struct runtime_sandbox *a = NULL, *b = NULL;
	if (!ok(jail_runtime_ops.start(&sa, &a) == 0 && jail_runtime_ops.start(&sb, &b) == 0,
		"two sandboxes for the sweep")) {
		jail_runtime_ops.destroy(a);
		jail_runtime_ops.destroy(b);
		return;
	}
	_cleanup_close_ int dfd = open(rd_a, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	pid_t shim_a = 0;
	uint64_t st;
	jail_pidfile_read(dfd, JAIL_SHIM_PID, &shim_a, &st);
	jail_runtime_ops.release(a); /* the daemon is gone */
	char orphan[700], pool[700];
	snprintf(orphan, sizeof(orphan), "%s/orphan", root);
	snprintf(pool, sizeof(pool), "%s/.hutch-disk-pool", root);
	mkdir(orphan, 0700);
	mkdir(pool, 0700);
	sh("touch %s/0.img", pool);
	struct jail_cgroup cg_a, cg_orphan;
	jail_cgroup_init(&cg_a, cgparent, id_a);
	jail_cgroup_init(&cg_orphan, cgparent, "orphan");
	mkdir(cg_orphan.dirs[0], 0755);

	const char *keep[] = { id_b };
	int r = jail_sweep(root, cgparent, keep, 1);
	ok(r == 2, "sweep removed 2 sandboxes (r=%d)", r);
	bool gone = false;
	for (int i = 0; i < 100 && !gone; i++, usleep(10000))
		gone = !running(shim_a);
	ok(gone, "the shim of the sandbox not kept is gone");
	ok(access(rd_a, F_OK) < 0 && access(orphan, F_OK) < 0 && access(pool, F_OK) < 0,
	   "its RUN_DIR, a RUN_DIR without a shim and the disk pool are removed");
	ok(access(cg_a.dirs[0], F_OK) < 0 && access(cg_orphan.dirs[0], F_OK) < 0,
	   "their cgroups are removed");
	ok(!loop_backs(rd_a), "no loop device left on its disk");
	ok(jail_runtime_ops.alive(b), "the kept sandbox lives on");
	jail_cgroup_done(&cg_a);
	jail_cgroup_done(&cg_orphan);

	/* A kill the daemon began (SIGTERM to the shim) is never taken back. */
	_cleanup_close_ int dfd_b = open(rd_b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	pid_t shim_b = 0;
	jail_pidfile_read(dfd_b, JAIL_SHIM_PID, &shim_b, &st);
	kill(shim_b, SIGTERM);
	bool stopping = false;
	for (int i = 0; i < 100 && !stopping; i++, usleep(1000))
		stopping = !jail_runtime_ops.alive(b);
	ok(stopping, "alive() is false once the shim is told to stop");
	ok(jail_runtime_ops.destroy(b) == 0 && access(rd_b, F_OK) < 0, "destroy() after that");
	rmdir(root);
}

static int cmp_u64(const void *a, const void *b)
{
	return *(const uint64_t *)a < *(const uint64_t *)b ? -1 : 1;
}

static int bench(int n)
{
	uint64_t *t = calloc((size_t)n, sizeof(uint64_t)), *d = calloc((size_t)n, sizeof(uint64_t));
	for (int i = 0; i < n; i++) {
		char id[64], rd[600];
		snprintf(id, sizeof(id), "bench-%d-%d", (int)getpid(), i);
		snprintf(rd, sizeof(rd), "%s/%s", tmp, id);
		mkdir(rd, 0700);
		struct sandbox_spec spec;
		fill_spec(&spec, id, rd);
		if (getenv("BENCH_DISK_MB"))
			spec.disk_mb = (unsigned)atoi(getenv("BENCH_DISK_MB"));
		struct runtime_sandbox *rs = NULL;
		uint64_t t0 = now_usec();
		if (jail_runtime_ops.start(&spec, &rs) < 0) {
			fprintf(stderr, "start failed\n");
			return 1;
		}
		t[i] = now_usec() - t0;
		if (getenv("BENCH_VERBOSE"))
			sh("grep -o 'ready in.*)' %s/shim.log | sed 's/^/# %.2f ms: /'", rd,
			   t[i] / 1e3);
		t0 = now_usec();
		jail_runtime_ops.destroy(rs);
		d[i] = now_usec() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_u64);
	qsort(d, (size_t)n, sizeof(*d), cmp_u64);
	printf("start: p50 %.2f ms p90 %.2f ms min %.2f ms; destroy: p50 %.2f ms (n=%d)\n",
	       t[n / 2] / 1000.0, t[n * 9 / 10] / 1000.0, t[0] / 1000.0, d[n / 2] / 1000.0, n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && streq(argv[1], "shim"))
		return jail_shim_main(argc, argv);
	test_seccomp_list();
	const char *why = NULL;
	if (geteuid() != 0)
		why = "needs root";
	else if (access("/proc/self/ns/user", F_OK) < 0)
		why = "no user namespaces";
	else if (access("/bin/busybox", X_OK) < 0)
		why = "no /bin/busybox (scripts/deps.sh installs busybox-static)";
	else if (!find_build())
		why = "envd-bundle or hutch-init not built (set HUTCH_BUILD)";
	else if (sh("command -v ip >/dev/null") != 0)
		why = "no ip(8) to make a network namespace";
	if (why) {
		skip(why, "jail sandbox tests");
		return done();
	}
	snprintf(tmp, sizeof(tmp), "/tmp/hutch-test-jail-XXXXXX");
	if (!mkdtemp(tmp) || chmod(tmp, 0755) < 0 || !make_rootfs()) {
		ok(false, "test root filesystem");
		return done();
	}
	snprintf(run_dir, sizeof(run_dir), "%s/run", tmp);
	mkdir(run_dir, 0700);
	snprintf(cgparent, sizeof(cgparent), "hutch-test-%d", (int)getpid());
	snprintf(netns_name, sizeof(netns_name), "hutch-test-%d", (int)getpid());
	snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", netns_name);
	if (sh("ip netns add %s", netns_name) != 0) {
		skip("cannot create a network namespace", "jail sandbox tests");
		sh("rm -rf %s", tmp);
		return done();
	}
	int ret = 0;
	if (argc > 2 && streq(argv[1], "bench"))
		ret = bench(atoi(argv[2]));
	else {
		test_sandbox();
		test_failure();
		test_sweep();
	}
	sh("ip netns delete %s", netns_name);
	sh("for c in /sys/fs/cgroup/*/%s /sys/fs/cgroup/%s; do [ -d $c ] && rmdir $c; done "
	   "2>/dev/null; true",
	   cgparent, cgparent);
	sh("rm -rf %s", tmp);
	return ret ? ret : done();
}
