#include "orchestr/envdinit.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "common/log.h"
#include "common/macro.h"
#include "net/netcurl.h"
#include "net/netpool.h"

struct init_call {
	int netns_fd;
	unsigned port;
};

static int init_connect(void *userdata)
{
	struct init_call *c = userdata;
	return net_connect_in_netns(c->netns_fd, (uint16_t)c->port);
}

int envd_init_post(int netns_fd, unsigned port, const char *token, const char *body,
		   unsigned timeout_ms)
{
	struct init_call call = { .netns_fd = netns_fd, .port = port };
	struct netcurl_socket sock = { .connect = init_connect, .userdata = &call };
	char url[64], auth[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/init", port);
	if ((size_t)snprintf(auth, sizeof(auth), "X-Access-Token: %s", token) >= sizeof(auth))
		return -EINVAL;
	_cleanup_(netcurl_easy_freep) CURL *e = curl_easy_init();
	_cleanup_(netcurl_slist_freep) struct curl_slist *h = NULL;
	struct curl_slist *l;
	if (!e || !(l = curl_slist_append(h, "Content-Type: application/json")))
		return -ENOMEM;
	h = l;
	if (!(l = curl_slist_append(h, auth)))
		return -ENOMEM;
	h = l;
	if (!(l = curl_slist_append(h, "Expect:")))
		return -ENOMEM;
	h = l;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	netcurl_use_socket(e, &sock);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, netcurl_discard);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	CURLcode rc = curl_easy_perform(e);
	explicit_bzero(auth, sizeof(auth));
	if (rc != CURLE_OK) {
		if (sock.err < 0)
			return log_debug_errno(sock.err, "envd /init: cannot connect: %m");
		log_debug("envd /init: %s", curl_easy_strerror(rc));
		return rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	}
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	if (status == 204)
		return 0;
	log_debug("envd /init answered %ld", status);
	return status == 401 ? -EACCES : -EPROTO;
}
