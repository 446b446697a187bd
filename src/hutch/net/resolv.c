/*
 * The host's upstream resolvers, for a sandbox's /etc/resolv.conf. Sandboxes reach no host
 * service, so a loopback stub (systemd-resolved's 127.0.0.53, dnsmasq on 127.0.0.1) is useless to
 * them: they get the resolvers behind it.
 */
#include "net-internal.h"
#include "netpool.h"

#include <arpa/inet.h>
#include <stdio.h>

#include "common/macro.h"

/* Appends the IPv4 non-loopback nameservers of `path`; sets *saw_loopback when it skips one. */
static int resolvers_from(const char *path, struct in_addr *out, unsigned max, unsigned n,
			  bool *saw_loopback)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return (int)n;
	char line[512];
	while (fgets(line, sizeof(line), f) && n < max) {
		char word[16], addr[64];
		if (sscanf(line, " %15s %63s", word, addr) != 2 || !streq(word, "nameserver"))
			continue;
		struct in_addr a;
		if (inet_pton(AF_INET, addr, &a) != 1) {
			/* IPv6 (sandboxes have no IPv6) or a scoped address: skip. */
			struct in6_addr a6;
			if (inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6))
				*saw_loopback = true;
			continue;
		}
		uint32_t h = ntohl(a.s_addr);
		if ((h >> 24) == 127 || h == 0) {
			*saw_loopback = true;
			continue;
		}
		bool dup = false;
		for (unsigned i = 0; i < n; i++)
			dup |= out[i].s_addr == a.s_addr;
		if (!dup)
			out[n++] = a;
	}
	return (int)n;
}

int net_resolvers(struct in_addr *out, unsigned max)
{
	bool loopback = false;
	int n = resolvers_from("/etc/resolv.conf", out, max, 0, &loopback);
	if (n == 0 && loopback)
		n = resolvers_from("/run/systemd/resolve/resolv.conf", out, max, 0, &loopback);
	return n;
}

int net_resolv_conf(char *buf, size_t size)
{
	struct in_addr addrs[3]; /* glibc reads at most MAXNS = 3 */
	int n = net_resolvers(addrs, ELEMENTSOF(addrs));
	if (n == 0)
		return -ENOENT;
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &addrs[i], a, sizeof(a));
		int w = snprintf(buf + len, size - len, "nameserver %s\n", a);
		if (w < 0 || (size_t)w >= size - len)
			return -ENOBUFS;
		len += (size_t)w;
	}
	return (int)len;
}
