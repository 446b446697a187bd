/* JSON requests to the REST API for the client verbs (libcurl), as the SDK makes them. */
#include <curl/curl.h>
#include <stdio.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/strbuf.h"

#define MAX_RESPONSE (64u << 20)

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
	struct strbuf *sb = ud;
	if (sb->len + size * n > MAX_RESPONSE)
		return 0;
	return strbuf_append(sb, p, size * n) < 0 ? 0 : size * n;
}

char *cli_api_escape(const char *segment)
{
	char *e = curl_easy_escape(NULL, segment, 0);
	char *s = e ? strdup(e) : NULL;
	curl_free(e);
	return s;
}

long cli_api_json(const struct cli_api *api, const char *method, const char *path,
		  const json_t *body, json_t **resp)
{
	if (resp)
		*resp = NULL;
	CURL *c = curl_easy_init();
	if (!c)
		return -1;
	_cleanup_free_ char *url = NULL, *hdr = NULL, *text = NULL;
	if (asprintf(&url, "%s%s", api->url, path) < 0 ||
	    asprintf(&hdr, "X-API-Key: %s", api->key) < 0) {
		curl_easy_cleanup(c);
		return -1;
	}
	struct curl_slist *h = curl_slist_append(NULL, hdr);
	h = curl_slist_append(h, "Accept: application/json");
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "null");
	}
	_cleanup_strbuf_ struct strbuf out = { 0 };
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	long status = -1;
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		fprintf(stderr,
			"hutch: cannot reach the API at %s: %s (is `hutch serve` running? "
			"E2B_API_URL sets the address)\n",
			api->url, curl_easy_strerror(rc));
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (resp && out.len)
		*resp = json_loadb(out.data, out.len, 0, NULL);
	return status;
}

int cli_api_error(long status, const json_t *resp, const char *what)
{
	if (status < 0)
		return 1; /* the transport error is printed already */
	const char *msg = json_string_value(json_object_get(resp, "message"));
	fprintf(stderr, "hutch: %s: %ld: %s\n", what, status,
		msg		? msg
		: status == 401 ? "invalid API key"
				: "request failed");
	return 1;
}
