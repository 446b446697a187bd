/*
 * The network slot pool against the real kernel: namespaces, veths, the nftables table. Needs
 * root; skips otherwise. Sends traffic only to this machine: the host's own addresses, slots, and
 * a fake "internet" host on TEST-NET-2 (198.51.100.1) in a namespace of its own, reached only
 * after checking that the route to it goes through its local veth.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "net/net-internal.h"
#include "net/netpool.h"
#include "tap.h"

#define FAKE_PORT  8080
#define BLOCKED_MS 300

static char prefix[8], state_dir[64], fake_if[16], fake_path[128], subnet[32];
/* A /29 of TEST-NET-2 per run (parallel runs): .1 the fake host, .2 the host side. */
static char fake_net[32], fake_host[16], fake_gw[16];
static int fake_fd = -1;
static bool fake_ok;

static struct in_addr addr(const char *s)
{
	struct in_addr a = { 0 };
	inet_pton(AF_INET, s, &a);
	return a;
}

/* Connects from inside ns_fd (or the host when -1) to daddr:port, optionally from saddr.
 * 0 when connected, -errno otherwise (-ETIMEDOUT when the packets vanished). */
static int try_connect(int ns_fd, const char *daddr, uint16_t port, const char *saddr)
{
	int fd = ns_fd >= 0 ? net_socket_in_netns(ns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK)
			    : socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int r = 0;
	if (saddr) {
		struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr = addr(saddr) };
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			r = -errno;
			goto out;
		}
	}
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr = addr(daddr) };
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		goto out;
	if (errno != EINPROGRESS) {
		r = -errno;
		goto out;
	}
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, BLOCKED_MS) == 0) {
		r = -ETIMEDOUT;
		goto out;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	r = -err;
out:
	close(fd);
	return r;
}

/* A listening TCP socket inside ns_fd (or the host when -1) on bind_addr:port. */
static int listen_on(int ns_fd, const char *bind_addr, uint16_t port)
{
	int fd = ns_fd >= 0 ? net_socket_in_netns(ns_fd, AF_INET, SOCK_STREAM)
			    : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr = addr(bind_addr) };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* An ephemeral port on the host that nothing else uses. */
static int listen_host_any(uint16_t *port)
{
	int fd = listen_on(-1, "0.0.0.0", 0);
	if (fd < 0)
		return fd;
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	return fd;
}

static bool cmd_output_contains(const char *cmd, const char *needle)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return false;
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	pclose(f);
	return strstr(buf, needle) != NULL;
}

static void fake_internet_up(void)
{
	struct nlink *inside = NULL, *nl = NULL;
	snprintf(fake_if, sizeof(fake_if), "%sf", prefix);
	snprintf(fake_path, sizeof(fake_path), "%s-fake", state_dir);
	int r = netns_create(fake_path, &fake_fd, &inside);
	if (r == 0)
		r = nlink_open(&nl);
	if (r == 0)
		r = nlink_veth_add(nl, fake_if, "eth0", fake_fd);
	if (r == 0)
		r = nlink_addr_add(nl, fake_if, addr(fake_gw), 29);
	if (r == 0)
		r = nlink_link_up(nl, fake_if);
	if (r == 0)
		r = nlink_addr_add(inside, "eth0", addr(fake_host), 29);
	if (r == 0)
		r = nlink_link_up(inside, "eth0");
	nlink_close(inside);
	nlink_close(nl);
	char cmd[128], want[32];
	snprintf(cmd, sizeof(cmd), "ip -o -4 route get %s 2>/dev/null", fake_host);
	snprintf(want, sizeof(want), " dev %s ", fake_if);
	/* Never aim at 198.51.100.1 unless it is certain to stay on this machine. */
	fake_ok = r == 0 && cmd_output_contains(cmd, want);
	ok(fake_ok, "fake internet %s behind %s (r=%d)", fake_host, fake_if, r);
}

static void fake_internet_down(void)
{
	struct nlink *nl = NULL;
	if (nlink_open(&nl) == 0) {
		nlink_link_delete(nl, fake_if);
		nlink_close(nl);
	}
	if (fake_fd >= 0)
		close(fake_fd);
	netns_remove(fake_path);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_resolv_conf(void)
{
	char buf[512];
	int n = net_resolv_conf(buf, sizeof(buf));
	ok(n == -ENOENT || (n > 0 && startswith(buf, "nameserver ") && buf[n - 1] == '\n' &&
			    !strstr(buf, "127.")),
	   "net_resolv_conf gives upstream nameserver lines (%d)", n);
	if (n > 0)
		diag("resolv.conf for sandboxes: %.*s", n - 1, buf);
	ok(net_resolv_conf(buf, 4) == -ENOBUFS || n == -ENOENT,
	   "net_resolv_conf bounds its output");
}

struct addr_args {
	const char *a;
};

static int add_spoof_addr(void *arg)
{
	struct addr_args *aa = arg;
	struct nlink *nl = NULL;
	int r = nlink_open(&nl);
	if (r == 0)
		r = nlink_addr_add(nl, "eth0", addr(aa->a), 32);
	nlink_close(nl);
	return r;
}

static void test_isolation(struct netpool *p, struct net_slot *a, struct net_slot *b)
{
	uint16_t port = 0;
	int host_l = listen_host_any(&port);
	ok(host_l >= 0, "host listener on 0.0.0.0:%u (stands in for the API)", port);
	ok(try_connect(-1, a->host_addr, port, NULL) == 0, "host reaches its own listener on %s",
	   a->host_addr);
	ok(try_connect(-1, "127.0.0.1", port, NULL) == 0, "host reaches it on 127.0.0.1");

	int r = try_connect(a->netns_fd, a->host_addr, port, NULL);
	is_int(r, -ETIMEDOUT, "slot -> its gateway %s:%u dropped", a->host_addr, port);
	r = try_connect(b->netns_fd, b->host_addr, port, NULL);
	is_int(r, -ETIMEDOUT, "internet slot -> its gateway dropped");
	r = try_connect(a->netns_fd, b->host_addr, port, NULL);
	is_int(r, -ETIMEDOUT, "slot -> another slot's gateway (a host address) dropped");
	r = try_connect(a->netns_fd, "127.0.0.1", port, NULL);
	is_int(r, -ECONNREFUSED, "slot's 127.0.0.1 is its own loopback, not the host's");
	close(host_l);

	/* Slot to slot, both ways, whatever the internet setting. */
	int lb = listen_on(b->netns_fd, "0.0.0.0", 7001);
	int la = listen_on(a->netns_fd, "0.0.0.0", 7002);
	ok(lb >= 0 && la >= 0, "listeners inside both slots");
	int fd = net_connect_in_netns(b->netns_fd, 7001);
	ok(fd >= 0, "net_connect_in_netns reaches slot B's listener on 127.0.0.1 (%d)", fd);
	if (fd >= 0)
		close(fd);
	is_int(try_connect(a->netns_fd, b->guest_addr, 7001, NULL), -ETIMEDOUT,
	       "slot A -> slot B %s dropped", b->guest_addr);
	is_int(try_connect(b->netns_fd, a->guest_addr, 7002, NULL), -ETIMEDOUT,
	       "internet slot B -> slot A %s dropped", a->guest_addr);
	is_int(net_connect_in_netns(a->netns_fd, 7009), -ECONNREFUSED,
	       "net_connect_in_netns reports a closed port");
	close(la);
	close(lb);

	if (!fake_ok) {
		skip("no fake internet", "internet egress");
		return;
	}
	int lf = listen_on(fake_fd, "0.0.0.0", FAKE_PORT);
	ok(lf >= 0, "fake internet listener on %s:%u", fake_host, FAKE_PORT);
	is_int(try_connect(b->netns_fd, fake_host, FAKE_PORT, NULL), 0,
	       "internet slot reaches the fake internet");
	is_int(try_connect(a->netns_fd, fake_host, FAKE_PORT, NULL), -ETIMEDOUT,
	       "slot without internet does not");

	uint64_t t0 = now_usec();
	r = netpool_set_internet(p, a, true);
	uint64_t t1 = now_usec();
	ok(r == 0 && a->internet, "internet toggled on in %" PRIu64 " us", t1 - t0);
	is_int(try_connect(a->netns_fd, fake_host, FAKE_PORT, NULL), 0, "now slot A reaches it");
	t0 = now_usec();
	r = netpool_set_internet(p, a, false);
	t1 = now_usec();
	ok(r == 0 && !a->internet, "internet toggled off in %" PRIu64 " us", t1 - t0);
	is_int(try_connect(a->netns_fd, fake_host, FAKE_PORT, NULL), -ETIMEDOUT,
	       "and no longer does");
	ok(netpool_set_internet(p, a, false) == 0, "toggling off twice is fine");

	/* Root inside the namespace adds an address of its choosing: nothing leaves with it. */
	char spoof[16];
	struct in_addr g = addr(b->guest_addr);
	g.s_addr = htonl(ntohl(g.s_addr) + 64 * 4);
	inet_ntop(AF_INET, &g, spoof, sizeof(spoof));
	struct addr_args aa = { spoof };
	r = netns_run_in(b->netns_fd, add_spoof_addr, &aa);
	ok(r == 0, "address %s added inside slot B", spoof);
	is_int(try_connect(b->netns_fd, fake_host, FAKE_PORT, spoof), -ETIMEDOUT,
	       "slot B with a spoofed source is dropped");
	is_int(try_connect(b->netns_fd, fake_host, FAKE_PORT, b->guest_addr), 0,
	       "slot B with its own source still passes");
	close(lf);
}

static void test_perf(struct netpool *p)
{
	enum { N = 20 };
	uint64_t acq[N], rel[N];
	int fails = 0;
	for (int i = 0; i < N; i++) {
		/* Steady state: wait for the refill thread to top the pool up. */
		struct netpool_stats st;
		for (int w = 0; w < 2000; w++) {
			netpool_get_stats(p, &st);
			if (st.warm >= 2)
				break;
			usleep(1000);
		}
		struct net_slot *s;
		uint64_t t0 = now_usec();
		int r = netpool_acquire(p, false, &s);
		acq[i] = now_usec() - t0;
		if (r < 0) {
			fails++;
			rel[i] = 0;
			continue;
		}
		t0 = now_usec();
		netpool_release(p, s);
		rel[i] = now_usec() - t0;
	}
	ok(fails == 0, "%d warm acquire/release cycles", N);
	qsort(acq, N, sizeof(acq[0]), cmp_u64);
	qsort(rel, N, sizeof(rel[0]), cmp_u64);
	struct netpool_stats st;
	netpool_get_stats(p, &st);
	diag("acquire (warm): median %" PRIu64 " us, max %" PRIu64 " us", acq[N / 2], acq[N - 1]);
	diag("release: median %" PRIu64 " us, max %" PRIu64 " us", rel[N / 2], rel[N - 1]);
	diag("slot creation: %" PRIu64 " slots, mean %" PRIu64 " us, max %" PRIu64 " us",
	     st.created, st.created ? st.create_usec_total / st.created : 0, st.create_usec_max);
	ok(st.cold_acquires == 0, "no cold acquires in steady state");

	struct net_slot *s;
	uint64_t t0 = now_usec();
	int r = netpool_acquire(p, true, &s);
	uint64_t dt = now_usec() - t0;
	ok(r == 0 && s->internet, "acquire with internet in %" PRIu64 " us", dt);
	if (r == 0)
		netpool_release(p, s);
}

static bool any_link_with_prefix(void)
{
	struct if_nameindex *ifs = if_nameindex();
	bool found = false;
	for (struct if_nameindex *i = ifs; i && i->if_index; i++)
		found |= startswith(i->if_name, prefix);
	if_freenameindex(ifs);
	return found;
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return true;
	struct dirent *de;
	bool empty = true;
	while ((de = readdir(d)))
		empty &= streq(de->d_name, ".") || streq(de->d_name, "..");
	closedir(d);
	return empty;
}

static int read_forward(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "re");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

int main(void)
{
	test_resolv_conf();

	if (geteuid() != 0) {
		skip("not root", "network slots need CAP_SYS_ADMIN and CAP_NET_ADMIN");
		return done();
	}
	if (access("/proc/self/ns/net", R_OK) < 0) {
		skip("no network namespaces in this kernel", "network slots");
		return done();
	}
	if (firewall_table_exists(NULL) < 0) {
		skip("nftables unavailable", "network slots");
		return done();
	}

	/* Unique per run, fixed width so no prefix is a prefix of another run's. */
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned v = (unsigned)getpid() % (36 * 36 * 36);
	snprintf(prefix, sizeof(prefix), "t%c%c%c", b36[v / 1296], b36[v / 36 % 36], b36[v % 36]);
	snprintf(subnet, sizeof(subnet), "10.%u.0.0", 64 + (unsigned)getpid() % 128);
	snprintf(state_dir, sizeof(state_dir), "/tmp/hutch-netpool-%s", prefix);
	unsigned fake = 8 * ((unsigned)getpid() % 32);
	snprintf(fake_net, sizeof(fake_net), "198.51.100.%u/29", fake);
	snprintf(fake_host, sizeof(fake_host), "198.51.100.%u", fake + 1);
	snprintf(fake_gw, sizeof(fake_gw), "198.51.100.%u", fake + 2);
	/* Meaningful only when no other pool (a parallel run) had turned forwarding on. */
	int forward_before = firewall_table_exists(NULL) == 0 ? read_forward() : -1;
	diag("prefix %s, subnet %s/16, state %s", prefix, subnet, state_dir);

	const char *const allowed[] = { fake_net, NULL };
	struct netpool_config cfg = {
		.state_dir = state_dir,
		.prefix = prefix,
		.subnet = subnet,
		.warm = 2,
		.max_slots = 64,
		.allowed_cidrs = allowed,
	};
	log_setup("test-netpool", getenv("DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN, false);
	struct netpool *p = NULL;
	uint64_t t0 = now_usec();
	int r = netpool_new(&cfg, &p);
	uint64_t dt = now_usec() - t0;
	if (r == -EPERM) {
		skip("namespaces not permitted here", "network slots");
		return done();
	}
	if (!ok(r == 0, "netpool_new with 2 warm slots in %" PRIu64 " us (r=%d)", dt, r)) {
		rmdir(state_dir);
		return done();
	}
	ok(firewall_table_exists(prefix) == 1, "table inet hutch_%s exists", prefix);
	ok(read_forward() == 1, "ip_forward is on");

	fake_internet_up();

	struct net_slot *a = NULL, *b = NULL;
	t0 = now_usec();
	r = netpool_acquire(p, false, &a);
	dt = now_usec() - t0;
	ok(r == 0 && !a->internet, "acquire (no internet) in %" PRIu64 " us", dt);
	r = netpool_acquire(p, true, &b);
	ok(r == 0 && b->internet, "acquire (internet) %s", r == 0 ? b->host_if : "");
	if (r < 0 || !a)
		return done();
	struct stat st;
	ok(stat(a->netns_path, &st) == 0 && if_nametoindex(a->host_if) > 0,
	   "slot %u: %s and %s exist", a->index, a->netns_path, a->host_if);
	ok(streq(a->host_if, prefix) == false && strlen(a->host_if) < IFNAMSIZ,
	   "host interface name %s", a->host_if);

	test_isolation(p, a, b);

	/* A daemon restart: detach keeps handed-out slots, the next pool adopts them. */
	unsigned ia = a->index, ib = b->index;
	char guest_b[16], if_a[IFNAMSIZ], if_b[IFNAMSIZ];
	snprintf(guest_b, sizeof(guest_b), "%s", b->guest_addr);
	snprintf(if_a, sizeof(if_a), "%s", a->host_if);
	snprintf(if_b, sizeof(if_b), "%s", b->host_if);
	p = netpool_detach(p);
	ok(if_nametoindex(if_a) > 0 && if_nametoindex(if_b) > 0 &&
	       firewall_table_exists(prefix) == 1,
	   "detach keeps handed-out slots %s, %s and the table", if_a, if_b);
	r = netpool_new(&cfg, &p);
	ok(r == 0, "netpool_new again over the leftovers (r=%d)", r);
	if (r < 0)
		return done();
	r = netpool_adopt(p, ia, &a);
	ok(r == 0 && !a->internet, "slot %u adopted without internet (r=%d)", ia, r);
	r = netpool_adopt(p, ib, &b);
	ok(r == 0 && b->internet && streq(b->guest_addr, guest_b),
	   "slot %u adopted with internet (r=%d)", ib, r);
	ok(netpool_adopt(p, ib, &b) == -ENOENT, "adopting twice fails");
	ok(netpool_reclaim(p) == 0, "reclaim of the unadopted warm leftovers");
	if (fake_ok && r == 0) {
		int lf = listen_on(fake_fd, "0.0.0.0", FAKE_PORT);
		is_int(try_connect(b->netns_fd, fake_host, FAKE_PORT, NULL), 0,
		       "adopted internet slot still reaches the fake internet");
		is_int(try_connect(a->netns_fd, fake_host, FAKE_PORT, NULL), -ETIMEDOUT,
		       "adopted slot without internet still does not");
		close(lf);
	}
	char a_if[IFNAMSIZ];
	snprintf(a_if, sizeof(a_if), "%s", a->host_if);
	netpool_release(p, a);
	bool gone = false;
	for (int w = 0; w < 500 && !gone; w++, usleep(2000))
		gone = if_nametoindex(a_if) == 0;
	ok(gone, "released slot's link %s is gone soon after", a_if);

	test_perf(p);

	fake_internet_down();

	/* A restart with fewer slots than the slots the last run left: the pool starts anyway
	 * (its warm fill waits for free indexes) and removes the slots beyond its range. */
	struct net_slot *c = NULL;
	ok(netpool_acquire(p, false, &c) == 0, "a second slot held over the restart");
	unsigned ib_now = MIN(b->index, c ? c->index : b->index);
	snprintf(if_b, sizeof(if_b), "%s", b->host_if);
	snprintf(if_a, sizeof(if_a), "%s", c ? c->host_if : b->host_if);
	p = netpool_detach(p);
	struct netpool_config small = cfg;
	small.max_slots = 1;
	small.warm = 1;
	r = netpool_new(&small, &p);
	ok(r == 0, "netpool_new with 1 slot over a leftover slot %u (r=%d)", ib_now, r);
	if (r < 0)
		return done();
	ok(netpool_reclaim(p) == 0 && if_nametoindex(if_b) == 0 && if_nametoindex(if_a) == 0,
	   "reclaim removes the leftover slots %s and %s, in range or beyond", if_b, if_a);
	p = netpool_free(p);
	ok(!any_link_with_prefix(), "no link named %s* left", prefix);
	ok(dir_empty(state_dir), "no namespace bind mount left in %s", state_dir);
	ok(firewall_table_exists(prefix) == 0, "table inet hutch_%s deleted", prefix);
	ok(!cmd_output_contains("grep -F -- '"
				"/tmp/hutch-netpool-' /proc/self/mountinfo",
				prefix),
	   "no mount left");
	if (forward_before >= 0 && firewall_table_exists(NULL) == 0)
		is_int(read_forward(), forward_before, "ip_forward restored to %d", forward_before);
	rmdir(state_dir);
	return done();
}
