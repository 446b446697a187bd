/*
 * A stand-in for libFuzzer's main() in ordinary (gcc) builds: feeds every file named on the
 * command line, or found directly inside a directory named there, to LLVMFuzzerTestOneInput(),
 * so the committed corpus replays as a regression test. Fails when an argument cannot be read
 * or when no input was found at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz.h"

static int run_file(int dirfd, const char *name, const char *shown)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s\n", shown, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		fprintf(stderr, "%s: not a regular file\n", shown);
		return -1;
	}
	size_t size = (size_t)st.st_size;
	/* An exact-size heap copy, so ASan catches reads one byte past the input. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf) {
		close(fd);
		return -1;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != size) {
		fprintf(stderr, "%s: short read\n", shown);
		free(buf);
		return -1;
	}
	printf("%s (%zu bytes)\n", shown, size);
	fflush(stdout);
	LLVMFuzzerTestOneInput(buf, size);
	free(buf);
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the regular files of a directory in name order (reproducible output). */
static int run_dir(const char *path, unsigned *count)
{
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **p = realloc(names, cap * sizeof(*names));
			if (!p) {
				r = -1;
				break;
			}
			names = p;
		}
		if (!(names[n] = strdup(de->d_name))) {
			r = -1;
			break;
		}
		n++;
	}
	if (r == 0 && n)
		qsort(names, n, sizeof(*names), compare_names);
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			char shown[4096];
			snprintf(shown, sizeof(shown), "%s/%s", path, names[i]);
			if (run_file(dirfd(d), names[i], shown) < 0)
				r = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	closedir(d);
	return r;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int r = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			r = -1;
		} else if (S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) < 0)
				r = -1;
		} else if (run_file(AT_FDCWD, argv[i], argv[i]) < 0) {
			r = -1;
		} else {
			count++;
		}
	}
	if (r == 0 && count == 0) {
		fprintf(stderr, "usage: %s FILE|DIR...: no inputs found\n", argv[0]);
		return EXIT_FAILURE;
	}
	printf("%u inputs replayed\n", count);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
