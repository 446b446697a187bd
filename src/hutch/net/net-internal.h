/*
 * Building blocks of the slot pool, shared by its files and the unit test (which builds a fake
 * "internet" host out of the same parts). Not for other components: they use netpool.h.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

/* rtnetlink over libmnl (nlink.c). A handle is bound to the namespace it was opened in. */
struct nlink;
/* Opens a route netlink socket in the calling thread's network namespace. */
int nlink_open(struct nlink **out);
struct nlink *nlink_close(struct nlink *nl);
/* Creates a veth pair: `host_if` here and `peer_if` directly inside the namespace `netns_fd`. */
int nlink_veth_add(struct nlink *nl, const char *host_if, const char *peer_if, int netns_fd);
int nlink_link_delete(struct nlink *nl, const char *ifname);
int nlink_link_up(struct nlink *nl, const char *ifname);
/* Adds addr/prefixlen to ifname (IPv4). */
int nlink_addr_add(struct nlink *nl, const char *ifname, struct in_addr addr, unsigned prefixlen);
/* Adds a default IPv4 route via gw. */
int nlink_route_default(struct nlink *nl, struct in_addr gw);
bool nlink_link_exists(const char *ifname);

/*
 * Creates a network namespace owned by the initial user namespace (the caller must be real
 * root), bind-mounts it on `path` (created; must not exist) and returns an O_CLOEXEC fd of it
 * plus, when nl_out is not NULL, a netlink handle opened inside it. Runs in a short-lived thread
 * so the caller's namespace never changes.
 */
int netns_create(const char *path, int *fd_out, struct nlink **nl_out);
/* Opens a persisted namespace again, checking that `path` is a namespace bind mount. */
int netns_open(const char *path, int *fd_out);
/* Unmounts and unlinks the bind mount (the namespace dies with its last user). */
int netns_remove(const char *path);
/* Runs fn(arg) in the calling thread switched into netns_fd, then switches back. */
int netns_run_in(int netns_fd, int (*fn)(void *arg), void *arg);
/* The host namespace fd, opened once (0 or -errno). */
int netns_host_fd(void);

/* The host's upstream IPv4 resolvers (resolv.c). Returns how many were stored in out[]. */
int net_resolvers(struct in_addr *out, unsigned max);

/* nftables through libnftables (firewall.c); one table "inet hutch_<prefix>" per pool. */
struct firewall;
struct firewall_config {
	const char *prefix;
	struct in_addr subnet;	   /* the slots' /16 */
	const struct in_addr *dns; /* upstream resolvers reachable on port 53 */
	unsigned n_dns;
	const char *const *allowed_cidrs; /* exempt from the always-denied ranges */
};
int firewall_new(const struct firewall_config *cfg, struct firewall **out);
/* Deletes the table (when `keep` is false) and frees the handle. */
struct firewall *firewall_free(struct firewall *fw, bool keep);
int firewall_slot_add(struct firewall *fw, const char *ifname, struct in_addr guest);
int firewall_slot_remove(struct firewall *fw, const char *ifname, struct in_addr guest);
int firewall_set_internet(struct firewall *fw, const char *ifname, bool allow);
/* 1 when ifname is in the internet set, 0 when not, -errno on failure. */
int firewall_get_internet(struct firewall *fw, const char *ifname);
/* Whether the table `inet hutch_<prefix>` exists (any prefix when prefix is NULL). */
int firewall_table_exists(const char *prefix);
