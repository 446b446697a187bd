#include "net/netcurl.h"

static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct netcurl_socket *s = userdata;
	(void)purpose;
	(void)a;
	int fd = s->connect(s->userdata);
	if (fd < 0) {
		s->err = fd;
		return CURL_SOCKET_BAD;
	}
	return fd;
}

static int already_connected(void *userdata, curl_socket_t fd, curlsocktype purpose)
{
	(void)userdata;
	(void)fd;
	(void)purpose;
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

void netcurl_use_socket(CURL *e, struct netcurl_socket *s)
{
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, already_connected);
}

size_t netcurl_discard(char *data, size_t size, size_t n, void *userdata)
{
	(void)data;
	(void)userdata;
	return size * n;
}
