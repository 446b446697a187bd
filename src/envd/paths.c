#include "envd.h"
#include "common/strbuf.h"

char *path_normalize(const char *abs)
{
	size_t n = strlen(abs);
	char *out = malloc(n + 2);
	if (!out)
		return NULL;
	size_t o = 0;
	const char *p = abs;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 1 && p[0] == '.') {
			/* skip */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	return out;
}

int path_expand(const char *path, const struct user_info *u, const char *base, char **out)
{
	if (!path)
		path = "";
	if (strlen(path) > 4096)
		return -ENAMETOOLONG;
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	int r;
	if (path[0] == '/') {
		r = strbuf_appends(&sb, path);
	} else if (path[0] == '~') {
		if (path[1] && path[1] != '/')
			return -EINVAL; /* ~otheruser is not supported, as in envd */
		r = strbuf_printf(&sb, "%s/%s", u->home, path + 1);
	} else if (!*path) {
		r = strbuf_appends(&sb, !isempty(base) ? base : u->home);
	} else {
		r = strbuf_printf(&sb, "%s/%s", u->home, path);
	}
	if (r < 0)
		return r;
	char *n = path_normalize(sb.data);
	if (!n)
		return -ENOMEM;
	*out = n;
	return 0;
}
