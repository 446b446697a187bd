/*
 * The slot pool: a background thread keeps cfg->warm slots ready so that netpool_acquire is a
 * pop from a list; another destroys released slots. Slot i owns the i-th /30 of the subnet (.1 host
 * side, .2 guest), the veth <prefix><i> and the bind mount <state_dir>/<prefix><i>; everything
 * about a slot can be recomputed from its index, which is what adoption and reclaim after a crash
 * rely on.
 */
#include "netpool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "net-internal.h"

#define MAX_SLOTS_PER_16 16384u
/* Threads destroying released slots: a teardown mostly waits (for the device's references to
 * drop after the link is deleted), and those waits overlap. */
#define NETPOOL_REAPERS 4
#define IP_FORWARD	"/proc/sys/net/ipv4/ip_forward"
/* Host-wide, not per pool: whichever pool finds forwarding off records it here, and whichever
 * pool is freed last (no `inet hutch_*` table left) turns it off again, across restarts too. */
#define IP_FORWARD_MARK "/run/hutch-ip_forward-was-off"

/* FOREIGN: the name is taken by a link that is not ours; never used, never deleted. */
enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_LEFTOVER, SLOT_FOREIGN };

struct netpool {
	char *state_dir;
	char prefix[8];
	struct in_addr subnet;
	unsigned warm_target;
	unsigned max_slots;
	struct firewall *fw;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *state;		 /* per index */
	struct net_slot **slots; /* per index: warm or handed out */
	struct net_slot **warm;	 /* stack of ready slots */
	unsigned n_warm;
	struct net_slot **dead; /* released, waiting for the reaper to destroy them */
	unsigned n_dead;
	pthread_cond_t dead_cond; /* the reaper waits on it */
	unsigned creating;
	unsigned cursor;
	bool stop;
	bool thread_started;
	unsigned reapers_started;
	pthread_t thread, reapers[NETPOOL_REAPERS];
	struct netpool_stats stats;
};

static void slot_names(const struct netpool *p, unsigned index, struct net_slot *s)
{
	s->index = index;
	snprintf(s->host_if, sizeof(s->host_if), "%s%u", p->prefix, index);
	snprintf(s->netns_path, sizeof(s->netns_path), "%s/%s%u", p->state_dir, p->prefix, index);
	uint32_t base = ntohl(p->subnet.s_addr) + index * 4u;
	struct in_addr host = { htonl(base + 1) }, guest = { htonl(base + 2) };
	inet_ntop(AF_INET, &host, s->host_addr, sizeof(s->host_addr));
	inet_ntop(AF_INET, &guest, s->guest_addr, sizeof(s->guest_addr));
}

static struct in_addr slot_guest(const struct net_slot *s)
{
	struct in_addr a = { 0 };
	inet_pton(AF_INET, s->guest_addr, &a);
	return a;
}

/* Tears down whatever exists of a slot; safe on a half-built one. */
static int slot_teardown(struct netpool *p, const struct net_slot *s, bool del_link)
{
	int r = 0, k = 0;
	struct nlink *nl = NULL;
	if (del_link && (k = nlink_open(&nl)) == 0) {
		/* Deleting one end deletes the pair; the link goes first so traffic stops first. */
		k = nlink_link_delete(nl, s->host_if);
		nlink_close(nl);
	}
	if (k < 0 && k != -ENODEV)
		r = log_debug_errno(k, "netpool: deleting link %s: %m", s->host_if);
	if ((k = firewall_slot_remove(p->fw, s->host_if, slot_guest(s))) < 0 && r == 0)
		r = k;
	if ((k = netns_remove(s->netns_path)) < 0 && r == 0)
		r = log_debug_errno(k, "netpool: removing %s: %m", s->netns_path);
	return r;
}

static struct net_slot *slot_free(struct net_slot *s)
{
	if (s) {
		if (s->netns_fd >= 0)
			close(s->netns_fd);
		free(s);
	}
	return NULL;
}

static int slot_build(struct netpool *p, struct net_slot *s)
{
	struct in_addr host, guest;
	inet_pton(AF_INET, s->host_addr, &host);
	inet_pton(AF_INET, s->guest_addr, &guest);

	struct nlink *inside = NULL;
	int r = netns_create(s->netns_path, &s->netns_fd, &inside);
	if (r < 0)
		return log_debug_errno(r, "netpool: creating namespace %s: %m", s->netns_path);
	/* Rules before the link exists: there is no moment when the slot is unfiltered. */
	r = firewall_slot_add(p->fw, s->host_if, guest);
	if (r < 0)
		goto out;

	struct nlink *nl = NULL;
	r = nlink_open(&nl);
	if (r < 0)
		goto out;
	r = nlink_veth_add(nl, s->host_if, "eth0", s->netns_fd);
	if (r == -EEXIST)
		r = -EADDRINUSE; /* not ours: slot_new must not delete it */
	if (r == 0)
		r = nlink_addr_add(nl, s->host_if, host, 30);
	if (r == 0)
		r = nlink_link_up(nl, s->host_if);
	nlink_close(nl);
	if (r < 0)
		goto out;

	r = nlink_addr_add(inside, "eth0", guest, 30);
	if (r == 0)
		r = nlink_link_up(inside, "eth0");
	if (r == 0)
		r = nlink_route_default(inside, host);
out:
	nlink_close(inside);
	return r;
}

/* Reserves a free index. Caller holds the lock. */
static int index_reserve(struct netpool *p)
{
	for (unsigned k = 0; k < p->max_slots; k++) {
		unsigned i = (p->cursor + k) % p->max_slots;
		if (p->state[i] == SLOT_FREE) {
			p->state[i] = SLOT_BUSY;
			p->cursor = (i + 1) % p->max_slots;
			return (int)i;
		}
	}
	return -ENOSPC;
}

/* Makes a new slot (not yet in any list). Takes the lock only briefly. */
static int slot_new_once(struct netpool *p, struct net_slot **out)
{
	pthread_mutex_lock(&p->lock);
	int index = index_reserve(p);
	pthread_mutex_unlock(&p->lock);
	if (index < 0)
		return index;

	struct net_slot *s = calloc(1, sizeof(*s));
	if (!s) {
		pthread_mutex_lock(&p->lock);
		p->state[index] = SLOT_FREE;
		pthread_mutex_unlock(&p->lock);
		return -ENOMEM;
	}
	s->netns_fd = -1;
	slot_names(p, (unsigned)index, s);

	uint64_t t0 = now_usec();
	int r = slot_build(p, s);
	uint64_t dt = now_usec() - t0;
	if (r < 0) {
		(void)slot_teardown(p, s, r != -EADDRINUSE);
		slot_free(s);
		pthread_mutex_lock(&p->lock);
		p->state[index] = r == -EADDRINUSE ? SLOT_FOREIGN : SLOT_FREE;
		p->stats.failures++;
		pthread_mutex_unlock(&p->lock);
		return r;
	}
	pthread_mutex_lock(&p->lock);
	p->slots[index] = s;
	p->stats.created++;
	p->stats.create_usec_total += dt;
	p->stats.create_usec_max = MAX(p->stats.create_usec_max, dt);
	pthread_mutex_unlock(&p->lock);
	*out = s;
	return 0;
}

static int slot_new(struct netpool *p, struct net_slot **out)
{
	int r;
	/* Skips indexes whose link name someone else took. */
	for (unsigned tries = 0; tries < 8; tries++)
		if ((r = slot_new_once(p, out)) != -EADDRINUSE)
			break;
	return r;
}

static void slot_destroy(struct netpool *p, struct net_slot *s)
{
	(void)slot_teardown(p, s, true);
	pthread_mutex_lock(&p->lock);
	p->slots[s->index] = NULL;
	p->state[s->index] = SLOT_FREE;
	pthread_mutex_unlock(&p->lock);
	slot_free(s);
}

static unsigned free_count(const struct netpool *p)
{
	unsigned n = 0;
	for (unsigned i = 0; i < p->max_slots; i++)
		n += p->state[i] == SLOT_FREE;
	return n;
}

static bool refill_needed(const struct netpool *p)
{
	return p->n_warm + p->creating < p->warm_target && free_count(p) > 0;
}

static void *refill_thread(void *arg)
{
	struct netpool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && !refill_needed(p))
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		p->creating++;
		pthread_mutex_unlock(&p->lock);
		struct net_slot *s = NULL;
		int r = slot_new(p, &s);
		pthread_mutex_lock(&p->lock);
		p->creating--;
		if (r == 0) {
			p->warm[p->n_warm++] = s;
			continue;
		}
		log_debug_errno(r, "netpool: refilling: %m");
		/* Back off rather than spin on a persistent failure. */
		struct timespec ts = timespec_in_ms(CLOCK_REALTIME, 200);
		if (!p->stop)
			pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Destroys released slots. Threads of their own: behind the refills of a busy pool, teardowns
 * fell behind for good (released slots, their namespaces' fds and their indexes piled up until
 * the pool ran out). */
static void *reaper_thread(void *arg)
{
	struct netpool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->n_dead == 0)
			pthread_cond_wait(&p->dead_cond, &p->lock);
		if (p->stop)
			break;
		struct net_slot *d = p->dead[--p->n_dead];
		pthread_mutex_unlock(&p->lock);
		slot_destroy(p, d);
		pthread_mutex_lock(&p->lock);
		pthread_cond_signal(&p->cond); /* an index is free again */
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static int read_ip_forward(void)
{
	_cleanup_close_ int fd = open(IP_FORWARD, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	char c = 0;
	if (read(fd, &c, 1) != 1)
		return -EIO;
	return c == '1';
}

static int write_ip_forward(bool on)
{
	_cleanup_close_ int fd = open(IP_FORWARD, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	return write_all(fd, on ? "1\n" : "0\n", 2);
}

static bool prefix_valid(const char *prefix)
{
	size_t n = prefix ? strlen(prefix) : 0;
	if (n < 1 || n > 4 || !(prefix[0] >= 'a' && prefix[0] <= 'z'))
		return false;
	return strspn(prefix, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

/* Marks every <prefix><index> left in state_dir by an earlier run as LEFTOVER. */
static int scan_leftovers(struct netpool *p)
{
	_cleanup_closedir_ DIR *d = opendir(p->state_dir);
	if (!d)
		return negative_errno();
	size_t plen = strlen(p->prefix);
	struct dirent *de;
	while ((de = readdir(d))) {
		uint64_t index;
		if (!startswith(de->d_name, p->prefix) ||
		    parse_u64(de->d_name + plen, &index) < 0 || index >= p->max_slots)
			continue;
		p->state[index] = SLOT_LEFTOVER;
	}
	return 0;
}

int netpool_new(const struct netpool_config *cfg, struct netpool **out)
{
	if (!cfg || isempty(cfg->state_dir) || !prefix_valid(cfg->prefix) || !cfg->subnet)
		return -EINVAL;
	if (cfg->max_slots == 0 || cfg->max_slots > MAX_SLOTS_PER_16 || cfg->warm > cfg->max_slots)
		return -EINVAL;
	struct in_addr subnet;
	if (inet_pton(AF_INET, cfg->subnet, &subnet) != 1)
		return -EINVAL;
	subnet.s_addr &= htonl(0xffff0000u);
	int r = netns_host_fd();
	if (r < 0)
		return r;

	struct netpool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->dead_cond, NULL);
	snprintf(p->prefix, sizeof(p->prefix), "%s", cfg->prefix);
	p->subnet = subnet;
	p->warm_target = cfg->warm;
	p->max_slots = cfg->max_slots;
	p->state_dir = strdup(cfg->state_dir);
	p->state = calloc(cfg->max_slots, sizeof(*p->state));
	p->slots = calloc(cfg->max_slots, sizeof(*p->slots));
	p->warm = calloc(cfg->warm + 1, sizeof(*p->warm));
	p->dead = calloc(cfg->max_slots, sizeof(*p->dead));
	if (!p->state_dir || !p->state || !p->slots || !p->warm || !p->dead) {
		r = -ENOMEM;
		goto fail;
	}
	if (mkdir(p->state_dir, 0700) < 0 && errno != EEXIST) {
		r = negative_errno();
		goto fail;
	}
	r = scan_leftovers(p);
	if (r < 0)
		goto fail;

	struct in_addr dns[3];
	int n_dns = net_resolvers(dns, ELEMENTSOF(dns));
	struct firewall_config fwc = {
		.prefix = p->prefix,
		.subnet = subnet,
		.dns = dns,
		.n_dns = (unsigned)MAX(n_dns, 0),
		.allowed_cidrs = cfg->allowed_cidrs,
	};
	r = firewall_new(&fwc, &p->fw);
	if (r < 0)
		goto fail;

	/* Slots route through the host: forwarding must be on. Recorded so free can undo it. */
	r = read_ip_forward();
	if (r == 0) {
		_cleanup_close_ int mark =
		    open(IP_FORWARD_MARK, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (mark < 0)
			log_debug_errno(negative_errno(), "netpool: %s: %m", IP_FORWARD_MARK);
		r = write_ip_forward(true);
		if (r < 0)
			goto fail;
		log_debug("netpool: enabled net.ipv4.ip_forward");
	} else if (r < 0)
		goto fail;

	for (unsigned i = 0; i < cfg->warm; i++) {
		struct net_slot *s;
		r = slot_new(p, &s);
		/* Every index held by slots of an earlier run (adopted or reclaimed next): the
		 * thread fills the pool once they are free. */
		if (r == -ENOSPC)
			break;
		if (r < 0)
			goto fail;
		p->warm[p->n_warm++] = s;
	}
	r = -pthread_create(&p->thread, NULL, refill_thread, p);
	if (r < 0)
		goto fail;
	p->thread_started = true;
	for (; p->reapers_started < NETPOOL_REAPERS; p->reapers_started++) {
		r = -pthread_create(&p->reapers[p->reapers_started], NULL, reaper_thread, p);
		if (r < 0)
			goto fail;
	}
	*out = p;
	return 0;
fail:
	netpool_free(p);
	return r;
}

int netpool_acquire(struct netpool *p, bool allow_internet, struct net_slot **out)
{
	struct net_slot *s = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->n_warm > 0) {
		s = p->warm[--p->n_warm];
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (!s) {
		int r = slot_new(p, &s);
		if (r < 0)
			return r;
		pthread_mutex_lock(&p->lock);
		p->stats.cold_acquires++;
		pthread_mutex_unlock(&p->lock);
	}
	if (allow_internet) {
		int r = netpool_set_internet(p, s, true);
		if (r < 0) {
			slot_destroy(p, s);
			return r;
		}
	}
	*out = s;
	return 0;
}

int netpool_set_internet(struct netpool *p, struct net_slot *s, bool allow)
{
	int r = firewall_set_internet(p->fw, s->host_if, allow);
	if (r == 0)
		s->internet = allow;
	return r;
}

void netpool_release(struct netpool *p, struct net_slot *s)
{
	if (!p || !s)
		return;
	/* Cut it off now; the teardown (tens of ms: link deletion waits for RCU) happens in the
	 * background and the index stays taken until it is done. */
	if (s->internet)
		(void)netpool_set_internet(p, s, false);
	pthread_mutex_lock(&p->lock);
	p->dead[p->n_dead++] = s;
	pthread_cond_signal(&p->dead_cond);
	pthread_mutex_unlock(&p->lock);
}

int netpool_adopt(struct netpool *p, unsigned index, struct net_slot **out)
{
	pthread_mutex_lock(&p->lock);
	bool leftover = index < p->max_slots && p->state[index] == SLOT_LEFTOVER;
	if (leftover)
		p->state[index] = SLOT_BUSY;
	pthread_mutex_unlock(&p->lock);
	if (!leftover)
		return -ENOENT;

	struct net_slot *s = calloc(1, sizeof(*s));
	int r = s ? 0 : -ENOMEM;
	if (s) {
		s->netns_fd = -1;
		slot_names(p, index, s);
		r = netns_open(s->netns_path, &s->netns_fd);
	}
	if (r == 0 && !nlink_link_exists(s->host_if))
		r = -ENOENT;
	if (r == 0)
		/* Idempotent: the table survived the restart, or was recreated without slots. */
		r = firewall_slot_add(p->fw, s->host_if, slot_guest(s));
	if (r == 0) {
		r = firewall_get_internet(p->fw, s->host_if);
		if (r >= 0) {
			s->internet = r == 1;
			r = 0;
		}
	}
	pthread_mutex_lock(&p->lock);
	if (r == 0)
		p->slots[index] = s;
	else
		p->state[index] = SLOT_LEFTOVER; /* netpool_reclaim removes it */
	pthread_mutex_unlock(&p->lock);
	if (r < 0) {
		slot_free(s);
		return r;
	}
	*out = s;
	return 0;
}

/* Slots an earlier run with a larger --max-sandboxes left beyond this pool's range. */
static int reclaim_out_of_range(struct netpool *p)
{
	_cleanup_closedir_ DIR *d = opendir(p->state_dir);
	size_t plen = strlen(p->prefix);
	struct dirent *de;
	int r = 0;
	while (d && (de = readdir(d))) {
		uint64_t index;
		if (!startswith(de->d_name, p->prefix) ||
		    parse_u64(de->d_name + plen, &index) < 0 || index < p->max_slots ||
		    index >= MAX_SLOTS_PER_16)
			continue;
		struct net_slot s = { .netns_fd = -1 };
		slot_names(p, (unsigned)index, &s);
		int k = slot_teardown(p, &s, true);
		if (k < 0 && r == 0)
			r = k;
	}
	return r;
}

int netpool_reclaim(struct netpool *p)
{
	int r = reclaim_out_of_range(p);
	for (unsigned i = 0; i < p->max_slots; i++) {
		pthread_mutex_lock(&p->lock);
		bool leftover = p->state[i] == SLOT_LEFTOVER;
		if (leftover)
			p->state[i] = SLOT_BUSY;
		pthread_mutex_unlock(&p->lock);
		if (!leftover)
			continue;
		struct net_slot s = { .netns_fd = -1 };
		slot_names(p, i, &s);
		int k = slot_teardown(p, &s, true);
		if (k < 0 && r == 0)
			r = k;
		pthread_mutex_lock(&p->lock);
		p->state[i] = k < 0 ? SLOT_LEFTOVER : SLOT_FREE;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	return r;
}

void netpool_get_stats(struct netpool *p, struct netpool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->stats;
	out->warm = p->n_warm;
	out->in_use = 0;
	for (unsigned i = 0; i < p->max_slots; i++)
		out->in_use += p->slots[i] != NULL;
	out->in_use -= p->n_warm + p->n_dead;
	pthread_mutex_unlock(&p->lock);
}

static void pool_stop(struct netpool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_cond_broadcast(&p->dead_cond);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	for (unsigned i = 0; i < p->reapers_started; i++)
		pthread_join(p->reapers[i], NULL);
	p->thread_started = false;
	p->reapers_started = 0;
}

static void pool_done(struct netpool *p)
{
	free(p->dead);
	free(p->warm);
	free(p->slots);
	free(p->state);
	free(p->state_dir);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->dead_cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

struct netpool *netpool_free(struct netpool *p)
{
	if (!p)
		return NULL;
	pool_stop(p);
	if (p->fw) {
		/* Warm, handed-out and released-but-not-yet-destroyed slots are all in slots[]. */
		for (unsigned i = 0; i < p->max_slots; i++)
			if (p->slots[i])
				slot_destroy(p, p->slots[i]);
		(void)netpool_reclaim(p);
		p->fw = firewall_free(p->fw, false);
	}
	/* Leave forwarding on while another pool (another daemon, a parallel test) needs it. */
	if (access(IP_FORWARD_MARK, F_OK) == 0 && firewall_table_exists(NULL) == 0 &&
	    write_ip_forward(false) == 0) {
		(void)unlink(IP_FORWARD_MARK);
		log_debug("netpool: disabled net.ipv4.ip_forward again");
	}
	pool_done(p);
	return NULL;
}

struct netpool *netpool_detach(struct netpool *p)
{
	if (!p)
		return NULL;
	pool_stop(p);
	for (unsigned i = 0; i < p->n_warm; i++)
		slot_destroy(p, p->warm[i]);
	for (unsigned i = 0; i < p->n_dead; i++)
		slot_destroy(p, p->dead[i]);
	for (unsigned i = 0; i < p->max_slots; i++)
		p->slots[i] = slot_free(p->slots[i]);
	p->fw = firewall_free(p->fw, true);
	pool_done(p);
	return NULL;
}
