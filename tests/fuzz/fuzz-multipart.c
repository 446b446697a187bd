/*
 * POST /files bodies through the streaming upload API (multipart.c) on a scratch directory:
 * gzip inflation, raw bodies, multipart parts (as libmicrohttpd's post processor hands them
 * over), target paths from part filenames, metadata validation and Accept-Encoding parsing.
 *
 * Input (text, so the corpus stays readable):
 *   FLAGS "\n"                       g = gzip body, r = raw body, f = fixed path, m = metadata,
 *                                    a = Accept-Encoding line
 *   ["accept-encoding value\n"]      with a
 *   ["key: value\n"... "\n"]         with m
 *   BODY                             raw: the file content; otherwise parts separated by
 *                                    "\n--\n", each "NAME;FILENAME\n" + data
 *
 * Whatever the input: a finished upload lists only absolute, normal paths of regular files
 * inside the scratch tree whose content is what was sent; a failed one has an HTTP status and a
 * message.
 */
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include "envd.h"
#include "common/strbuf.h"
#include "fuzz.h"

#define BODY_CAP (1u << 20)

/* envd's shared state lives in main.c, which fuzz targets do not link. */

static char base_dir[64];

/* The stand-in for MHD_post_process: collects the (inflated) body, bounded. */
static int collect(void *ctx, const char *buf, size_t len)
{
	struct strbuf *sb = ctx;
	if (sb->len + len > BODY_CAP)
		return -E2BIG;
	return strbuf_append(sb, buf, len);
}

static const char *next_line(const char **p, const char *end, size_t *len)
{
	const char *s = *p;
	const char *nl = memchr(s, '\n', (size_t)(end - s));
	*len = nl ? (size_t)(nl - s) : (size_t)(end - s);
	*p = nl ? nl + 1 : end;
	return s;
}

static void check_error(struct upload *up)
{
	const struct upload_error *e = upload_error(up);
	fuzz_check(e->status >= 400 && e->status < 600);
	fuzz_check(e->message[0]);
}

static void check_file(int rootfd, const char *path, const char *want, size_t want_len)
{
	fuzz_check(path && path[0] == '/' && !strstr(path, "//") && !strstr(path, "/./") &&
		   !strstr(path, "/../"));
	struct stat st;
	fuzz_check(fstatat(rootfd, path + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode));
	if (!want)
		return;
	fuzz_check((size_t)st.st_size == want_len);
	int fd = openat(rootfd, path + 1, O_RDONLY | O_CLOEXEC);
	fuzz_check(fd >= 0);
	char *buf = malloc(want_len + 1);
	fuzz_check(buf);
	fuzz_check(read(fd, buf, want_len + 1) == (ssize_t)want_len);
	fuzz_check(memcmp(buf, want, want_len) == 0);
	free(buf);
	close(fd);
}

struct part {
	const char *name, *filename, *data;
	size_t len;
	char *name_buf, *filename_buf;
};

/* libmicrohttpd may announce a part with an empty chunk before its data, both at offset 0, so
 * upload_part() reads an empty part followed by one with the same name and filename as one. */
static bool merged_with_next(const struct part *parts, size_t nparts, size_t j)
{
	return parts[j].len == 0 && j + 1 < nparts && streq(parts[j].name, parts[j + 1].name) &&
	       streq(parts[j].filename ? parts[j].filename : "",
		     parts[j + 1].filename ? parts[j + 1].filename : "");
}

/* Splits the collected body into parts and hands them over in two chunks each. */
static int run_parts(struct upload *up, const struct strbuf *body, struct part *parts,
		     size_t *nparts, size_t max)
{
	const char *p = body->data ? body->data : "";
	const char *end = p + body->len;
	*nparts = 0;
	while (p < end && *nparts < max) {
		const char *sep = memmem(p, (size_t)(end - p), "\n--\n", 4);
		const char *pend = sep ? sep : end;
		size_t hlen;
		const char *h = next_line(&p, pend, &hlen);
		struct part *pt = &parts[(*nparts)++];
		const char *semi = memchr(h, ';', hlen);
		pt->name_buf = strndup(h, semi ? (size_t)(semi - h) : hlen);
		pt->filename_buf = semi ? strndup(semi + 1, hlen - (size_t)(semi + 1 - h)) : NULL;
		pt->name = pt->name_buf;
		pt->filename = pt->filename_buf;
		pt->data = p;
		pt->len = (size_t)(pend - p);
		size_t mid = pt->len / 2;
		int r = upload_part(up, pt->name, pt->filename, pt->data, 0, mid);
		if (r == 0 && pt->len > mid)
			r = upload_part(up, pt->name, pt->filename, pt->data + mid, mid,
					pt->len - mid);
		if (r < 0)
			return r;
		p = sep ? sep + 4 : end;
	}
	return 0;
}

static void run(int rootfd, const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	size_t len;
	const char *flags_s = next_line(&p, end, &len);
	char flags[16] = "";
	memcpy(flags, flags_s, MIN(len, sizeof(flags) - 1));
	bool gzip = strchr(flags, 'g'), raw = strchr(flags, 'r'), fixed = strchr(flags, 'f');

	if (strchr(flags, 'a')) {
		const char *h = next_line(&p, end, &len);
		char *header = strndup(h, len);
		fuzz_check(header);
		enum files_encoding e = files_accept_encoding(header);
		fuzz_check(e == FILES_ENCODING_IDENTITY || e == FILES_ENCODING_GZIP ||
			   e == FILES_ENCODING_UNACCEPTABLE);
		(void)files_identity_acceptable(header);
		free(header);
	}

	json_t *meta = NULL;
	if (strchr(flags, 'm')) {
		meta = json_object();
		fuzz_check(meta);
		while (p < end) {
			const char *l = next_line(&p, end, &len);
			if (len == 0)
				break;
			/* "Key: value", as X-Metadata-Key headers arrive. */
			const char *colon = memchr(l, ':', len);
			const char *vb = colon ? colon + 1 : l + len;
			if (vb < l + len && *vb == ' ')
				vb++;
			char *k = strndup(l, colon ? (size_t)(colon - l) : len);
			char *v = strndup(vb, (size_t)(l + len - vb));
			fuzz_check(k && v);
			fuzz_check(upload_metadata_add(meta, k, v) == 0);
			free(k);
			free(v);
		}
		struct upload_error err = { 0 };
		if (upload_metadata_validate(meta, &err) < 0) {
			fuzz_check(err.status == 400 &&
				   startswith(err.message, "invalid metadata"));
			json_decref(meta);
			return;
		}
	}

	struct user_info u = { .uid = geteuid(),
			       .gid = getegid(),
			       .name = "user",
			       .home = "/home/user",
			       .ngroups = 0 };
	struct upload *up = NULL;
	fuzz_check(upload_new(rootfd, &u, meta, gzip, raw ? "/up/raw.bin" : NULL, &up) == 0);
	json_decref(meta);

	struct strbuf body = { 0 };
	if (!raw)
		upload_set_multipart(up, fixed ? "/up/fixed.bin" : NULL, collect, &body);

	const char *b = p;
	size_t blen = (size_t)(end - p), cut = blen / 3;
	int r = upload_feed(up, b, cut);
	if (r == 0)
		r = upload_feed(up, b + cut, blen - cut);

	struct part parts[64];
	size_t nparts = 0;
	if (r == 0 && !raw)
		r = run_parts(up, &body, parts, &nparts, ELEMENTSOF(parts));
	if (r == 0)
		r = upload_finish(up);

	if (r < 0) {
		check_error(up);
	} else {
		json_t *res = upload_result(up);
		size_t i;
		json_t *e;
		json_array_foreach (res, i, e) {
			fuzz_check(streq(json_string_value(json_object_get(e, "type")), "file"));
			const char *path = json_string_value(json_object_get(e, "path"));
			check_file(rootfd, path, NULL, 0);
		}
		if (raw) {
			fuzz_check(json_array_size(res) == 1);
			const char *path =
			    json_string_value(json_object_get(json_array_get(res, 0), "path"));
			fuzz_check(streq(path, "/up/raw.bin"));
			if (!gzip)
				check_file(rootfd, path, b, blen);
		} else {
			/* Each "file" part became one entry, in order, holding its data (when two
			 * parts name one file, the last one's); see merged_with_next(). */
			size_t k = 0;
			for (size_t j = 0; j < nparts; j++) {
				if (!streq(parts[j].name, "file") ||
				    merged_with_next(parts, nparts, j))
					continue;
				json_t *pe = json_array_get(res, k++);
				fuzz_check(pe);
				const char *path = json_string_value(json_object_get(pe, "path"));
				bool overwritten = false;
				for (size_t later = k; later < json_array_size(res); later++)
					overwritten |=
					    streq(path, json_string_value(json_object_get(
							    json_array_get(res, later), "path")));
				if (overwritten)
					check_file(rootfd, path, NULL, 0);
				else
					check_file(rootfd, path, parts[j].data, parts[j].len);
			}
			fuzz_check(k == json_array_size(res));
		}
	}

	for (size_t j = 0; j < nparts; j++) {
		free(parts[j].name_buf);
		free(parts[j].filename_buf);
	}
	strbuf_free(&body);
	upload_free(up);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_base_dir(void)
{
	rmdir(base_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 16))
		return 0;
	if (!base_dir[0]) {
		snprintf(base_dir, sizeof(base_dir), "/tmp/fuzz-multipart-XXXXXX");
		fuzz_check(mkdtemp(base_dir));
		atexit(remove_base_dir);
	}
	char dir[96];
	snprintf(dir, sizeof(dir), "%s/root", base_dir);
	fuzz_check(mkdir(dir, 0755) == 0);
	int rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	fuzz_check(rootfd >= 0);

	struct user_info u = { .uid = geteuid(), .gid = getegid() };
	fsid_enter(&u);
	run(rootfd, data, size);
	fsid_leave();

	close(rootfd);
	fuzz_check(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
	return 0;
}
