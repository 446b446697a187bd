/*
 * Upper-layer disks made ahead, in the daemon: copying the golden image, attaching a loop
 * device and mounting ext4 took 5-10 ms of every start. A thread (at low priority) keeps up to
 * `keep` of them for the size last asked for, in DIR/.hutch-disk-pool/ next to the run
 * directories, each as a sparse image file and a detached mount (fsmount: in no mount
 * namespace, so nothing shows on the host). take() renames the image into the run directory
 * and hands the mount to the shim, which attaches it in its own mount namespace. Everything
 * not taken is destroyed by jail_diskpool_free (daemon shutdown); after a crash the detached
 * mounts and loop devices went with the daemon's fds, and the next daemon removes the stale
 * directory before using it.
 */
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "jail.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"

#define POOL_DIR "/.hutch-disk-pool"
#define POOL_MAX 16

struct made_disk {
	char *image;
	int mount_fd;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stop;
	char *parent; /* the run directories' directory */
	char *dir;    /* parent + POOL_DIR */
	unsigned mb, keep;
	unsigned generation; /* bumped when parent or mb change: disks in the making are stale */
	unsigned seq;
	struct made_disk disks[POOL_MAX];
	unsigned n;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void made_disk_destroy(struct made_disk *d)
{
	if (d->mount_fd >= 0)
		close(d->mount_fd);
	if (d->image)
		unlink(d->image);
	free(d->image);
	*d = (struct made_disk){ .mount_fd = -1 };
}

/* Called with the lock held. */
static void flush_locked(void)
{
	while (pool.n > 0)
		made_disk_destroy(&pool.disks[--pool.n]);
}

static void *pool_thread(void *arg)
{
	(void)arg;
	/* Refilling competes with the starts it serves: let them go first. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	pthread_mutex_lock(&pool.lock);
	while (!pool.stop) {
		if (pool.n >= pool.keep || !pool.mb) {
			pthread_cond_wait(&pool.cond, &pool.lock);
			continue;
		}
		unsigned gen = pool.generation, mb = pool.mb;
		_cleanup_free_ char *parent = strdup(pool.parent), *image = NULL;
		if (!parent || asprintf(&image, "%s/%u.img", pool.dir, pool.seq++) < 0)
			break;
		pthread_mutex_unlock(&pool.lock);
		int fd = jail_disk_make(parent, image, mb);
		pthread_mutex_lock(&pool.lock);
		if (fd < 0) {
			if (gen == pool.generation) {
				log_warn_errno(fd, "Failed to make a disk ahead in %s: %m",
					       pool.dir);
				pool.mb = 0; /* starts make their own until asked again */
			}
			continue;
		}
		struct made_disk d = { .image = TAKE_PTR(image), .mount_fd = fd };
		if (gen != pool.generation || pool.stop || pool.n >= POOL_MAX)
			made_disk_destroy(&d);
		else
			pool.disks[pool.n++] = d;
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* Called with the lock held: pool for mb disks under parent from now on. */
static int rekey_locked(const char *parent, unsigned mb, unsigned keep)
{
	pool.keep = MIN(keep, POOL_MAX);
	if (pool.parent && streq(pool.parent, parent)) {
		if (pool.mb != mb) {
			flush_locked();
			pool.mb = mb;
			pool.generation++;
		}
		return 0;
	}
	flush_locked();
	pool.generation++;
	if (pool.dir)
		rmdir(pool.dir);
	free(pool.parent);
	free(pool.dir);
	pool.dir = NULL;
	pool.mb = 0;
	if (!(pool.parent = strdup(parent)) || asprintf(&pool.dir, "%s" POOL_DIR, parent) < 0) {
		pool.parent = (free(pool.parent), NULL);
		return -ENOMEM;
	}
	/* Left by a daemon that crashed: its mounts and loop devices are gone already. */
	rm_rf_at(AT_FDCWD, pool.dir);
	if (mkdir(pool.dir, 0700) < 0)
		return -errno;
	pool.mb = mb;
	return 0;
}

int jail_diskpool_take(const char *run_dir, unsigned mb, unsigned keep)
{
	if (!mb || !keep)
		return -ENOENT;
	_cleanup_free_ char *copy = strdup(run_dir), *image = NULL;
	if (!copy)
		return -ENOMEM;
	const char *parent = dirname(copy);
	struct made_disk d = { .mount_fd = -1 };
	pthread_mutex_lock(&pool.lock);
	int r = pool.stop ? -ESHUTDOWN : rekey_locked(parent, mb, keep);
	if (r == 0 && !pool.running) {
		r = -pthread_create(&pool.thread, NULL, pool_thread, NULL);
		pool.running = r == 0;
	}
	if (r == 0 && pool.n > 0)
		d = pool.disks[--pool.n];
	else if (r == 0)
		r = -ENOENT;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	if (r < 0)
		return r;
	if (asprintf(&image, "%s/" JAIL_DISK_IMAGE, run_dir) < 0)
		r = -ENOMEM;
	/* NOREPLACE: a disk.img there belongs to the sandbox (resumed). */
	else if (renameat2(AT_FDCWD, d.image, AT_FDCWD, image, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0) {
		made_disk_destroy(&d);
		return r;
	}
	free(d.image);
	return d.mount_fd;
}

void jail_diskpool_free(void)
{
	pthread_mutex_lock(&pool.lock);
	pool.stop = true;
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	if (pool.running)
		pthread_join(pool.thread, NULL);
	pool.running = false;
	pthread_mutex_lock(&pool.lock);
	flush_locked();
	if (pool.dir)
		rm_rf_at(AT_FDCWD, pool.dir);
	pool.parent = (free(pool.parent), NULL);
	pool.dir = (free(pool.dir), NULL);
	pool.mb = 0;
	pool.stop = false; /* a later daemon in this process may use it again */
	pthread_mutex_unlock(&pool.lock);
}
