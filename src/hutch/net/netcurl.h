/* libcurl over a socket the caller connects itself (inside a sandbox's network namespace, or
 * through the orchestrator's per-sandbox connect): curl never opens or connects one. */
#pragma once

#include <curl/curl.h>

struct netcurl_socket {
	int (*connect)(void *userdata); /* a connected socket, or -errno */
	void *userdata;
	int err; /* the last failed connect's -errno; 0 while none failed */
};

/* Makes every connection of e come from s->connect; s must outlive the transfer. */
void netcurl_use_socket(CURL *e, struct netcurl_socket *s);

/* A CURLOPT_WRITEFUNCTION that drops the response body. */
size_t netcurl_discard(char *data, size_t size, size_t n, void *userdata);

static inline void netcurl_easy_freep(CURL **e)
{
	if (*e)
		curl_easy_cleanup(*e);
}

static inline void netcurl_slist_freep(struct curl_slist **l)
{
	curl_slist_free_all(*l);
}
