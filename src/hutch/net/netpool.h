/*
 * Network slots: one network namespace per sandbox with a veth pair to the host and nftables
 * rules, kept warm in a pool (namespace creation has a multi-ms tail). Egress policy is enforced
 * on the host side, never inside the sandbox.
 *
 * Host-wide effects: netpool_new turns net.ipv4.ip_forward on when it is off (slots route through
 * the host), leaving the mark /run/hutch-ip_forward-was-off; netpool_free turns it off again when
 * that mark exists and no pool's table (`inet hutch_*`) remains, whichever pool set it. Each pool
 * owns the nftables table `inet hutch_<prefix>`, the links
 * `<prefix><index>` and the bind mounts `<state_dir>/<prefix><index>`. The caller must be real
 * root (CAP_SYS_ADMIN and CAP_NET_ADMIN in the initial user namespace).
 */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct netpool_config {
	const char *state_dir; /* DATA/net: bind mounts of the namespaces live here */
	const char
	    *prefix; /* short (<= 4 chars) name prefix, unique per daemon (tests run several) */
	const char *subnet; /* IPv4 /16 for slots, e.g. "10.11.0.0"; each slot takes a /30 */
	unsigned warm;	    /* slots kept ready */
	unsigned max_slots; /* at most 16384 (a /16 of /30s) */
	/* NULL-terminated IPv4 CIDRs carved out of the always-denied ranges (private, link-local,
	 * documentation...) for slots with internet access; usually NULL. Tests use it for a fake
	 * internet on TEST-NET-2. */
	const char *const *allowed_cidrs;
};

struct net_slot {
	unsigned index;
	char netns_path[512]; /* bind mount of the namespace */
	int netns_fd;	      /* O_RDONLY|O_CLOEXEC fd of it, for setns() */
	char host_if[IFNAMSIZ];
	char host_addr[16];  /* gateway, host side of the veth */
	char guest_addr[16]; /* eth0 inside */
	bool internet;	     /* egress to the internet allowed */
};

struct netpool_stats {
	uint64_t created;	    /* slots built */
	uint64_t create_usec_total; /* time spent building them */
	uint64_t create_usec_max;
	uint64_t cold_acquires; /* acquires that found the pool empty */
	uint64_t failures;	/* failed builds */
	unsigned warm;		/* ready now */
	unsigned in_use;	/* handed out or adopted */
};

struct netpool;

/*
 * Creates the nftables table and chains and fills the warm pool (synchronously; a background
 * thread refills it afterwards). Slots left in state_dir by an earlier run are kept for
 * netpool_adopt until netpool_reclaim.
 */
int netpool_new(const struct netpool_config *cfg, struct netpool **out);
/* A ready slot (taken from the pool, or made now), with internet egress on or off. The pool
 * owns the slot; hand it back with netpool_release. */
int netpool_acquire(struct netpool *p, bool allow_internet, struct net_slot **out);
/* Turns a slot's internet egress on or off (one nftables set element; established flows to
 * the internet keep their replies but cannot send). */
int netpool_set_internet(struct netpool *p, struct net_slot *s, bool allow);
/* Destroys a slot's namespace, veth and rules (or resets and re-pools it). Its internet access
 * ends before this returns; the teardown itself runs on the pool's thread. `s` is gone. */
void netpool_release(struct netpool *p, struct net_slot *s);
/* Finds slot `index` again after a daemon restart (its namespace bind mount still exists). */
int netpool_adopt(struct netpool *p, unsigned index, struct net_slot **out);
/* Destroys every slot an earlier run left behind and nobody adopted (call after adopting). */
int netpool_reclaim(struct netpool *p);
void netpool_get_stats(struct netpool *p, struct netpool_stats *out);
/* Destroys every slot (acquired ones too: their pointers die) and the nftables table. */
struct netpool *netpool_free(struct netpool *p);
/* Daemon restart without stopping sandboxes: destroys the warm slots only and frees the
 * handle, keeping handed-out slots and the table for the next run's netpool_adopt. */
struct netpool *netpool_detach(struct netpool *p);

/* Opens a TCP connection to 127.0.0.1:port inside the slot's namespace (the front door's way
 * in: no host-visible address needed). Returns the fd or -errno. */
int net_connect_in_netns(int netns_fd, uint16_t port);
/* A socket(domain, type | SOCK_CLOEXEC) created inside the namespace; the calling thread is
 * back in the host namespace on return. Returns the fd or -errno. */
int net_socket_in_netns(int netns_fd, int domain, int type);
/* Writes "nameserver A\n" lines for a sandbox's /etc/resolv.conf: the host's IPv4 upstream
 * resolvers (those behind a loopback stub such as systemd-resolved's). Returns the length,
 * -ENOENT when there is none, -ENOBUFS when buf is too small. */
int net_resolv_conf(char *buf, size_t size);
