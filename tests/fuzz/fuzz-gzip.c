/*
 * gzip request bodies of POST /files (Content-Encoding: gzip) through envd's streaming
 * inflater, fed in chunks whose sizes come from the input. Input: 1 byte chunk size (1..256),
 * then the body. Whatever the input: the upload either fails with a 4xx/5xx and a message, or
 * the file holds exactly what zlib inflates from the body (concatenated members too), and never
 * more than the output cap.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "envd.h"
#include "common/strbuf.h"
#include "fuzz.h"

#define OUT_CAP (4u << 20)

static char base_dir[64];

static void remove_base_dir(void)
{
	rmdir(base_dir);
}

/* zlib's own answer: every gzip member inflated in turn; false when the body is not valid. */
static bool reference(const uint8_t *in, size_t len, struct strbuf *out)
{
	z_stream z = { 0 };
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return false;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	unsigned char buf[16384];
	bool ok = len > 0, ended = false;
	while (ok) {
		z.next_out = buf;
		z.avail_out = sizeof(buf);
		int r = inflate(&z, Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END && !(r == Z_BUF_ERROR && z.avail_in == 0)) {
			ok = false;
			break;
		}
		if (strbuf_append(out, (const char *)buf, sizeof(buf) - z.avail_out) < 0 ||
		    out->len > OUT_CAP) {
			ok = false;
			break;
		}
		ended = r == Z_STREAM_END;
		if (ended) {
			if (z.avail_in == 0)
				break;
			inflateReset(&z);
		} else if (z.avail_in == 0 && z.avail_out != 0) {
			break;
		}
	}
	inflateEnd(&z);
	return ok && ended;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 16))
		return 0;
	size_t chunk = (size_t)data[0] + 1;
	data++;
	size--;
	if (!base_dir[0]) {
		snprintf(base_dir, sizeof(base_dir), "/tmp/fuzz-gzip-XXXXXX");
		fuzz_check(mkdtemp(base_dir));
		atexit(remove_base_dir);
	}
	int rootfd = open(base_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	fuzz_check(rootfd >= 0);
	struct user_info u = { .uid = geteuid(), .gid = getegid() };
	fsid_enter(&u);

	struct upload *up = NULL;
	fuzz_check(upload_new(rootfd, &u, NULL, true, "/body.bin", &up) == 0);
	int r = 0;
	for (size_t off = 0; r == 0 && off < size; off += chunk)
		r = upload_feed(up, data + off, size - off < chunk ? size - off : chunk);
	if (r == 0)
		r = upload_finish(up);

	struct strbuf want = { 0 };
	bool valid = reference(data, size, &want);
	if (r < 0) {
		const struct upload_error *e = upload_error(up);
		fuzz_check(e->status >= 400 && e->status < 600 && e->message[0]);
	} else {
		/* envd accepted it: zlib agrees it is whole, and the file is its content. */
		fuzz_check(valid);
		struct stat st;
		fuzz_check(fstatat(rootfd, "body.bin", &st, 0) == 0);
		fuzz_check((size_t)st.st_size == want.len);
		int fd = openat(rootfd, "body.bin", O_RDONLY | O_CLOEXEC);
		fuzz_check(fd >= 0);
		char *got = malloc(want.len + 1);
		fuzz_check(got);
		fuzz_check(read(fd, got, want.len + 1) == (ssize_t)want.len);
		fuzz_check(want.len == 0 || memcmp(got, want.data, want.len) == 0);
		free(got);
		close(fd);
	}
	strbuf_free(&want);
	upload_free(up);
	unlinkat(rootfd, "body.bin", 0);
	fsid_leave();
	close(rootfd);
	return 0;
}
