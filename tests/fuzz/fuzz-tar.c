/*
 * The tar/OCI layer reader on hostile archives. Input: one flags byte (bit 0: OCI whiteouts),
 * then the archive (plain, gzip, zstd...). Whatever the archive, extraction stays inside the
 * destination: its parent directory holds nothing but the destination afterwards, and a
 * failure always comes with a message.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/util.h"
#include "template/tar.h"
#include "fuzz.h"

static unsigned count_children(int dfd)
{
	int fd = dup(dfd);
	fuzz_check(fd >= 0);
	DIR *d = fdopendir(fd);
	fuzz_check(d);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char top[] = "/tmp/hutch-fuzz-tar-XXXXXX";
	fuzz_check(mkdtemp(top));
	int topfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fuzz_check(topfd >= 0);
	fuzz_check(mkdirat(topfd, "dest", 0755) == 0);
	int dfd = openat(topfd, "dest", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fuzz_check(dfd >= 0);

	struct tar_opts o = { .oci_whiteouts = data[0] & 1,
			      .max_entries = 2000,
			      .max_bytes = 8 << 20,
			      .uid = -1,
			      .gid = -1 };
	struct tar_stats st;
	struct tar_error err = { { 0 } };
	int r = tar_extract_memory(data + 1, size - 1, dfd, &o, &st, &err);
	if (r < 0)
		fuzz_check(err.message[0] != '\0');
	else
		fuzz_check(st.bytes <= o.max_bytes && st.entries <= o.max_entries);
	/* Nothing escaped beside the destination. */
	fuzz_check(count_children(topfd) == 1);

	close(dfd);
	fuzz_check(rm_rf_at(topfd, "dest") == 0);
	close(topfd);
	fuzz_check(rmdir(top) == 0);
	return 0;
}
