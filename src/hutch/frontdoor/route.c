#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include "common/util.h"
#include "frontdoor/frontdoor.h"

static bool valid_id(const char *s, size_t n)
{
	if (n == 0 || n >= sizeof(((struct route_target *)0)->sandbox_id))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static int parse_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5)
		return -EINVAL;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* "<port>-<id>.<domain>": the first label holds both. */
static bool host_route(const char *host, struct route_target *out)
{
	if (!host)
		return false;
	const char *dot = strchr(host, '.');
	const char *dash = strchr(host, '-');
	if (!dot || !dash || dash > dot)
		return false;
	uint16_t port;
	if (parse_port(host, (size_t)(dash - host), &port) < 0)
		return false;
	const char *id = dash + 1;
	size_t n = (size_t)(dot - id);
	if (!valid_id(id, n))
		return false;
	memcpy(out->sandbox_id, id, n);
	out->sandbox_id[n] = 0;
	out->port = port;
	return true;
}

int route_parse(const char *host, const char *id_header, const char *port_header,
		struct route_target *out)
{
	memset(out, 0, sizeof(*out));
	if (host_route(host, out))
		return 0;
	if (isempty(id_header))
		return -ENOENT;
	size_t n = strlen(id_header);
	if (!valid_id(id_header, n))
		return -EINVAL;
	memcpy(out->sandbox_id, id_header, n + 1);
	out->port = ENVD_PORT;
	if (!isempty(port_header) && parse_port(port_header, strlen(port_header), &out->port) < 0)
		return -EINVAL;
	return 0;
}

bool route_hop_by_hop(const char *name)
{
	static const char *const hop[] = {
		"connection",
		"keep-alive",
		"proxy-connection",
		"proxy-authenticate",
		"proxy-authorization",
		"te",
		"trailer",
		"transfer-encoding",
		"upgrade",
		"host",
		"content-length",
		"expect",
	};
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	return false;
}
