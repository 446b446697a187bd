/* rtnetlink requests over libmnl: just what a slot needs (veth, link state, addresses, routes). */
#include "net-internal.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdlib.h>
#include <time.h>

#include "common/macro.h"

#define NLINK_REQ_SIZE 1024 /* our requests carry a handful of attributes */

struct nlink {
	struct mnl_socket *sock;
	unsigned portid;
	unsigned seq;
	char rbuf[16384]; /* replies: an ACK, or one RTM_NEWLINK */
};

int nlink_open(struct nlink **out)
{
	_cleanup_free_ struct nlink *nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl->sock)
		return negative_errno();
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		int r = negative_errno();
		mnl_socket_close(nl->sock);
		return r;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned)time(NULL);
	*out = TAKE_PTR(nl);
	return 0;
}

struct nlink *nlink_close(struct nlink *nl)
{
	if (nl) {
		mnl_socket_close(nl->sock);
		free(nl);
	}
	return NULL;
}

static struct nlmsghdr *nlink_msg(struct nlink *nl, char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = ++nl->seq;
	return nlh;
}

/* Sends one request and reads until its ACK (or error); cb sees any data replies. */
static int nlink_talk(struct nlink *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return negative_errno();
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, nl->rbuf, sizeof(nl->rbuf));
		if (n < 0)
			return negative_errno();
		int r = mnl_cb_run(nl->rbuf, (size_t)n, nlh->nlmsg_seq, nl->portid, cb, data);
		if (r < 0)
			return negative_errno();
		if (r == MNL_CB_STOP)
			return 0;
	}
}

static int ifindex_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	*(int *)data = ifm->ifi_index;
	return MNL_CB_OK;
}

/* The index of ifname in the socket's namespace (if_nametoindex would ask the thread's). */
static int nlink_ifindex(struct nlink *nl, const char *ifname)
{
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_GETLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	int index = 0;
	int r = nlink_talk(nl, nlh, ifindex_cb, &index);
	if (r < 0)
		return r;
	return index > 0 ? index : -ENODEV;
}

int nlink_veth_add(struct nlink *nl, const char *host_if, const char *peer_if, int netns_fd)
{
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
	struct nlattr *linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow its own ifinfomsg. */
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifm));
	memset(pifm, 0, sizeof(*pifm));
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_if);
	/* Born inside the namespace: no moment in the host's, no clash with the host's eth0. */
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return nlink_talk(nl, nlh, NULL, NULL);
}

int nlink_link_delete(struct nlink *nl, const char *ifname)
{
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_DELLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	return nlink_talk(nl, nlh, NULL, NULL);
}

int nlink_link_up(struct nlink *nl, const char *ifname)
{
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_NEWLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
	return nlink_talk(nl, nlh, NULL, NULL);
}

int nlink_addr_add(struct nlink *nl, const char *ifname, struct in_addr addr, unsigned prefixlen)
{
	int index = nlink_ifindex(nl, ifname);
	if (index < 0)
		return index;
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefixlen;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(addr), &addr);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(addr), &addr);
	if (prefixlen < 31) {
		struct in_addr brd = { .s_addr =
					   addr.s_addr |
					   htonl(prefixlen ? (1u << (32 - prefixlen)) - 1 : ~0u) };
		mnl_attr_put(nlh, IFA_BROADCAST, sizeof(brd), &brd);
	}
	return nlink_talk(nl, nlh, NULL, NULL);
}

int nlink_route_default(struct nlink *nl, struct in_addr gw)
{
	char buf[NLINK_REQ_SIZE];
	struct nlmsghdr *nlh = nlink_msg(nl, buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_GATEWAY, sizeof(gw), &gw);
	return nlink_talk(nl, nlh, NULL, NULL);
}

bool nlink_link_exists(const char *ifname)
{
	return if_nametoindex(ifname) > 0;
}
