/* The warm pool's bookkeeping against a real store: it fills per template, hands out only members
 * of the template's current layers and limits (a rebuilt template's old members are destroyed,
 * never handed out), drops the pool of a deleted template, and destroys everything at free.
 * Members here are records of what they were started from; the integration tests
 * (pool.test.mjs) cover real sandboxes. */
#include <ftw.h>
#include <pthread.h>
#include <unistd.h>
#include "common/macro.h"
#include "orchestr/warmpool.h"
#include "store/store.h"
#include "tap.h"

struct member {
	char *layers; /* the template's layers when it was started */
	unsigned memory_mb;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned started, destroyed, taken;
static bool fail_starts;

static int start(void *ctx, const struct template_rec *t, void **out)
{
	(void)ctx;
	if (__atomic_load_n(&fail_starts, __ATOMIC_SEQ_CST))
		return -EIO;
	struct member *m = calloc(1, sizeof(*m));
	if (!m || !(m->layers = json_dumps(t->layers, JSON_COMPACT))) {
		free(m);
		return -ENOMEM;
	}
	m->memory_mb = t->memory_mb;
	pthread_mutex_lock(&lock);
	started++;
	pthread_mutex_unlock(&lock);
	*out = m;
	return 0;
}

static void member_free(struct member *m)
{
	free(m->layers);
	free(m);
}

static void destroy(void *ctx, void *member)
{
	(void)ctx;
	member_free(member);
	pthread_mutex_lock(&lock);
	destroyed++;
	pthread_mutex_unlock(&lock);
}

static const struct warmpool_ops ops = { .start = start, .destroy = destroy };

static unsigned count(unsigned *what)
{
	pthread_mutex_lock(&lock);
	unsigned n = *what;
	pthread_mutex_unlock(&lock);
	return n;
}

/* Waits up to 5 s for *what to reach n. */
static bool reach(unsigned *what, unsigned n)
{
	for (int i = 0; i < 500 && count(what) < n; i++)
		usleep(10000);
	return count(what) >= n;
}

/* Takes a member for t; counts and frees it, returns whether it matched `layers` and `mem`, or
 * (allow_none) whether there was none. */
static bool take_check(struct warmpool *p, const struct template_rec *t, const char *layers,
		       unsigned mem, bool allow_none)
{
	struct member *m = warmpool_take(p, t);
	if (!m)
		return allow_none;
	bool good = streq(m->layers, layers) && m->memory_mb == mem;
	member_free(m);
	pthread_mutex_lock(&lock);
	taken++;
	pthread_mutex_unlock(&lock);
	return good;
}

/* Waits up to 5 s for the pool to hold n members. */
static bool waiting(unsigned n)
{
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&lock);
		unsigned w = started - destroyed - taken;
		pthread_mutex_unlock(&lock);
		if (w >= n)
			return true;
		usleep(10000);
	}
	return false;
}

static void put_template(struct store *st, const char *id, const char *layer, unsigned mem)
{
	struct template_rec t = { .layers = json_pack("[s]", layer), .memory_mb = mem };
	snprintf(t.id, sizeof(t.id), "%s", id);
	snprintf(t.status, sizeof(t.status), "ready");
	snprintf(t.envd_version, sizeof(t.envd_version), "0.6.4");
	if (store_template_put(st, &t) < 0)
		diag("store_template_put failed");
	json_decref(t.layers);
}

static void get_template(struct store *st, const char *id, struct template_rec *t)
{
	template_rec_clear(t);
	if (store_template_get(st, id, t) < 0)
		diag("store_template_get %s failed", id);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

int main(void)
{
	char dir[] = "/tmp/test-warmpool-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	struct store *st = NULL;
	ok(store_open(dir, &st) == 0, "store opens");
	put_template(st, "tpl", "/layers/one", 256);
	struct template_rec t = { 0 };
	get_template(st, "tpl", &t);

	struct warmpool *off = NULL;
	ok(warmpool_new(0, st, &ops, NULL, &off) == 0, "a pool of 0 is made");
	warmpool_want(off, &t);
	ok(warmpool_take(off, &t) == NULL, "a pool of 0 never holds anything");
	usleep(50000);
	is_int(count(&started), 0, "and starts nothing");
	off = warmpool_free(off);

	struct warmpool *p = NULL;
	ok(warmpool_new(2, st, &ops, NULL, &p) == 0, "a pool of 2 is made");
	is_int(warmpool_capacity(2), 2 * WARMPOOL_MAX_TEMPLATES, "capacity");
	warmpool_want(p, &t);
	ok(reach(&started, 2), "want() fills the template's pool");
	usleep(50000);
	is_int(count(&started), 2, "to 2 and no more");

	ok(take_check(p, &t, "[\"/layers/one\"]", 256, false),
	   "take() gives a member of the template");
	ok(reach(&started, 3), "and the pool refills");

	/* The template is rebuilt: new layers. Its two waiting members are stale. */
	put_template(st, "tpl", "/layers/two", 256);
	get_template(st, "tpl", &t);
	ok(take_check(p, &t, "[\"/layers/two\"]", 256, true),
	   "a rebuilt template never gets an old member");
	ok(reach(&destroyed, 2), "its old members are destroyed");
	ok(waiting(2), "and new ones started");
	ok(take_check(p, &t, "[\"/layers/two\"]", 256, false),
	   "members of the new layers are handed out");

	/* Limits count as much as layers. */
	unsigned before = count(&destroyed);
	put_template(st, "tpl", "/layers/two", 512);
	get_template(st, "tpl", &t);
	ok(take_check(p, &t, "[\"/layers/two\"]", 512, true),
	   "a template with a new memory limit never gets an old member");
	ok(reach(&destroyed, before + 1), "the members with the old limit are destroyed");

	/* A deleted template loses its pool at the next check (every 2 s). */
	ok(waiting(2), "the pool is full again");
	before = count(&destroyed);
	ok(store_template_delete(st, "tpl") == 0, "the template is deleted");
	ok(reach(&destroyed, before + 2), "its pool's members are destroyed");

	/* Failing starts back off instead of spinning. */
	put_template(st, "other", "/layers/x", 128);
	struct template_rec o = { 0 };
	get_template(st, "other", &o);
	__atomic_store_n(&fail_starts, true, __ATOMIC_SEQ_CST);
	unsigned s0 = count(&started);
	warmpool_want(p, &o);
	usleep(300000);
	ok(take_check(p, &o, "", 0, true) && count(&started) == s0,
	   "a failing start gives nothing");
	__atomic_store_n(&fail_starts, false, __ATOMIC_SEQ_CST);
	ok(waiting(2), "and is retried later");

	p = warmpool_free(p);
	is_int(count(&destroyed) + count(&taken), count(&started),
	       "free() destroys every member not taken");

	template_rec_clear(&t);
	template_rec_clear(&o);
	store_close(st);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return done();
}
