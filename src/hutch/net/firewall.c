/*
 * The pool's nftables table, `inet hutch_<prefix>`, enforced in the host namespace where a
 * sandbox cannot touch it. Slots are set elements, so adding a slot or toggling its internet
 * access is one small transaction, never a rule change:
 *
 *   slot_ifs      every slot's host-side veth
 *   slot_src      veth . guest address: the only source a slot may use (anti-spoofing)
 *   internet_ifs  slots allowed to reach the internet
 *   blocked       never reachable from a slot: private, loopback, link-local, CGNAT, multicast,
 *                 documentation and reserved ranges, and the slot subnet itself
 *   exempt        carved out of `blocked` by config (tests: a fake internet on TEST-NET-2)
 *   dns           the host's upstream resolvers, reachable on port 53 even if private
 *
 * A slot reaches no address of the host itself (input hook), no other slot, and the internet only
 * when allowed, masqueraded on the way out. Nothing comes in but replies.
 */
#include "net-internal.h"

#include <arpa/inet.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stdio.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/strbuf.h"

struct firewall {
	struct nft_ctx *ctx;
	pthread_mutex_t lock;
	char table[32]; /* "inet hutch_<prefix>" */
};

static const char *const blocked_cidrs[] = {
	"0.0.0.0/8",	   "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8",	"169.254.0.0/16",
	"172.16.0.0/12",   "192.0.0.0/24",   "192.0.2.0/24",  "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",   "240.0.0.0/4",
};

static struct nft_ctx *nft_new(void)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return NULL;
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	return ctx;
}

/* Runs one transaction (the whole buffer applies or none of it). Caller holds the lock. */
static int nft_run(struct nft_ctx *ctx, const char *cmd)
{
	if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
		const char *err = nft_ctx_get_error_buffer(ctx);
		log_debug("nft failed: %s (%s)", err ? err : "?", cmd);
		return err && strstr(err, "No such file or directory") ? -ENOENT : -EIO;
	}
	return 0;
}

static int firewall_run(struct firewall *fw, const char *cmd)
{
	pthread_mutex_lock(&fw->lock);
	int r = nft_run(fw->ctx, cmd);
	pthread_mutex_unlock(&fw->lock);
	return r;
}

/* Appends one "add element" command per CIDR. */
static int append_cidrs(struct strbuf *sb, const char *table, const char *set,
			const char *const *cidrs, size_t n)
{
	for (size_t i = 0; i < n && cidrs[i]; i++) {
		/* Config input: accept only what looks like an IPv4 CIDR. */
		if (strspn(cidrs[i], "0123456789./") != strlen(cidrs[i]) || strlen(cidrs[i]) > 18)
			return -EINVAL;
		if (strbuf_printf(sb, "add element %s %s { %s }\n", table, set, cidrs[i]) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int firewall_ruleset(const struct firewall_config *cfg, const char *t, struct strbuf *sb)
{
	char subnet[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &cfg->subnet, subnet, sizeof(subnet));

	/* "add" is idempotent: a restarted daemon keeps the slot sets of the sandboxes it
	 * adopts. */
	int r = strbuf_printf(
	    sb,
	    "add table %1$s\n"
	    "add set %1$s slot_ifs { type ifname; }\n"
	    "add set %1$s slot_src { type ifname . ipv4_addr; }\n"
	    "add set %1$s internet_ifs { type ifname; }\n"
	    "add set %1$s blocked { type ipv4_addr; flags interval; auto-merge; }\n"
	    "add set %1$s exempt { type ipv4_addr; flags interval; auto-merge; }\n"
	    "add set %1$s dns { type ipv4_addr; }\n"
	    "flush set %1$s blocked\n"
	    "flush set %1$s exempt\n"
	    "flush set %1$s dns\n"
	    "add chain %1$s prerouting { type filter hook prerouting priority -300; policy accept; "
	    "}\n"
	    "add chain %1$s input { type filter hook input priority -10; policy accept; }\n"
	    "add chain %1$s forward { type filter hook forward priority -10; policy accept; }\n"
	    "add chain %1$s from_slot\n"
	    "add chain %1$s postrouting { type nat hook postrouting priority srcnat; policy "
	    "accept; }\n"
	    "flush chain %1$s prerouting\n"
	    "flush chain %1$s input\n"
	    "flush chain %1$s forward\n"
	    "flush chain %1$s from_slot\n"
	    "flush chain %1$s postrouting\n"
	    /* Before conntrack: a spoofed or IPv6 packet never creates state. */
	    "add rule %1$s prerouting iifname @slot_ifs meta nfproto != ipv4 drop\n"
	    "add rule %1$s prerouting iifname @slot_ifs iifname . ip saddr != @slot_src drop\n"
	    /* No host service is a sandbox's business (DNS goes to the upstreams). */
	    "add rule %1$s input iifname @slot_ifs drop\n"
	    "add rule %1$s forward iifname @slot_ifs jump from_slot\n"
	    "add rule %1$s forward oifname @slot_ifs ct state established,related accept\n"
	    "add rule %1$s forward oifname @slot_ifs drop\n"
	    "add rule %1$s from_slot oifname @slot_ifs drop\n"
	    "add rule %1$s from_slot iifname != @internet_ifs drop\n"
	    "add rule %1$s from_slot ct state invalid drop\n"
	    "add rule %1$s from_slot ip daddr @dns meta l4proto { tcp, udp } th dport 53 accept\n"
	    "add rule %1$s from_slot ip daddr @exempt accept\n"
	    "add rule %1$s from_slot ip daddr @blocked drop\n"
	    "add rule %1$s from_slot accept\n"
	    "add rule %1$s postrouting ip saddr %2$s/16 oifname != @slot_ifs masquerade\n"
	    "add element %1$s blocked { %2$s/16 }\n",
	    t, subnet);
	if (r < 0)
		return -ENOMEM;
	r = append_cidrs(sb, t, "blocked", blocked_cidrs, ELEMENTSOF(blocked_cidrs));
	if (r < 0)
		return r;
	if (cfg->allowed_cidrs) {
		size_t n = 0;
		while (cfg->allowed_cidrs[n])
			n++;
		r = append_cidrs(sb, t, "exempt", cfg->allowed_cidrs, n);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < cfg->n_dns; i++) {
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &cfg->dns[i], a, sizeof(a));
		if (strbuf_printf(sb, "add element %s dns { %s }\n", t, a) < 0)
			return -ENOMEM;
	}
	return 0;
}

int firewall_new(const struct firewall_config *cfg, struct firewall **out)
{
	_cleanup_free_ struct firewall *fw = calloc(1, sizeof(*fw));
	if (!fw)
		return -ENOMEM;
	snprintf(fw->table, sizeof(fw->table), "inet hutch_%s", cfg->prefix);
	pthread_mutex_init(&fw->lock, NULL);

	_cleanup_strbuf_ struct strbuf sb = { 0 };
	int r = firewall_ruleset(cfg, fw->table, &sb);
	if (r < 0)
		return r;
	if (!sb.data)
		return -ENOMEM;
	fw->ctx = nft_new();
	if (!fw->ctx)
		return -ENOMEM;
	r = nft_run(fw->ctx, sb.data);
	if (r < 0) {
		nft_ctx_free(fw->ctx);
		return r;
	}
	*out = TAKE_PTR(fw);
	return 0;
}

struct firewall *firewall_free(struct firewall *fw, bool keep)
{
	if (!fw)
		return NULL;
	if (!keep) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "delete table %s\n", fw->table);
		(void)nft_run(fw->ctx, cmd);
	}
	nft_ctx_free(fw->ctx);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
	return NULL;
}

int firewall_slot_add(struct firewall *fw, const char *ifname, struct in_addr guest)
{
	char a[INET_ADDRSTRLEN], cmd[256];
	inet_ntop(AF_INET, &guest, a, sizeof(a));
	snprintf(cmd, sizeof(cmd),
		 "add element %1$s slot_ifs { \"%2$s\" }\n"
		 "add element %1$s slot_src { \"%2$s\" . %3$s }\n",
		 fw->table, ifname, a);
	return firewall_run(fw, cmd);
}

int firewall_slot_remove(struct firewall *fw, const char *ifname, struct in_addr guest)
{
	/* One element per transaction: a missing one must not keep the others. */
	char a[INET_ADDRSTRLEN], cmd[256];
	inet_ntop(AF_INET, &guest, a, sizeof(a));
	int r = 0, k;
	snprintf(cmd, sizeof(cmd), "delete element %s internet_ifs { \"%s\" }\n", fw->table,
		 ifname);
	(void)firewall_run(fw, cmd);
	snprintf(cmd, sizeof(cmd), "delete element %s slot_src { \"%s\" . %s }\n", fw->table,
		 ifname, a);
	if ((k = firewall_run(fw, cmd)) < 0 && k != -ENOENT)
		r = k;
	snprintf(cmd, sizeof(cmd), "delete element %s slot_ifs { \"%s\" }\n", fw->table, ifname);
	if ((k = firewall_run(fw, cmd)) < 0 && k != -ENOENT && r == 0)
		r = k;
	return r;
}

int firewall_set_internet(struct firewall *fw, const char *ifname, bool allow)
{
	char cmd[128];
	/* "add" of a present element and "destroy"-like delete of an absent one both succeed. */
	if (allow)
		snprintf(cmd, sizeof(cmd), "add element %s internet_ifs { \"%s\" }\n", fw->table,
			 ifname);
	else
		snprintf(cmd, sizeof(cmd), "delete element %s internet_ifs { \"%s\" }\n", fw->table,
			 ifname);
	int r = firewall_run(fw, cmd);
	return !allow && r == -ENOENT ? 0 : r;
}

int firewall_get_internet(struct firewall *fw, const char *ifname)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "get element %s internet_ifs { \"%s\" }\n", fw->table, ifname);
	int r = firewall_run(fw, cmd);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

int firewall_table_exists(const char *prefix)
{
	struct nft_ctx *ctx = nft_new();
	if (!ctx)
		return -ENOMEM;
	int r;
	if (prefix) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "list table inet hutch_%s\n", prefix);
		r = nft_run(ctx, cmd);
		r = r == 0 ? 1 : r == -ENOENT ? 0 : r;
	} else {
		r = nft_run(ctx, "list tables\n");
		if (r == 0) {
			const char *o = nft_ctx_get_output_buffer(ctx);
			r = o && strstr(o, "table inet hutch_") ? 1 : 0;
		}
	}
	nft_ctx_free(ctx);
	return r;
}
