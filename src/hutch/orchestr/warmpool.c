#include "orchestr/warmpool.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>
#include "common/log.h"
#include "common/util.h"

/* How often an idle pool thread checks that its templates still exist unchanged. */
#define CHECK_INTERVAL_MS 2000
/* After a failed start, the template's pool waits this long before the next try. */
#define RETRY_MS 1000

struct pool {
	char template_id[64];
	char *key; /* NULL: this entry is unused */
	void **members;
	unsigned n;
	uint64_t last_used;  /* warmpool.tick when last asked for */
	uint64_t retry_usec; /* monotonic: no start before this */
};

struct warmpool {
	unsigned per;
	struct store *st;
	const struct warmpool_ops *ops;
	void *ctx;
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct pool pools[WARMPOOL_MAX_TEMPLATES];
	void **dead; /* members to destroy on the thread: stale or evicted */
	size_t n_dead, cap_dead;
	uint64_t tick;
	bool stop;
	bool running;
	pthread_t thread;
};

unsigned warmpool_capacity(unsigned per_template)
{
	return per_template * WARMPOOL_MAX_TEMPLATES;
}

/* What a start takes from the template row (limits, layers, the build's config); members started
 * from another key are stale. */
static char *template_key(const struct template_rec *t)
{
	_cleanup_free_ char *layers = json_dumps(t->layers, JSON_COMPACT);
	/* The build's settings (env, user, workdir, start command) are part of what a member is. */
	_cleanup_free_ char *config =
	    t->config ? json_dumps(t->config, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
	char *key = NULL;
	if (!layers || !config ||
	    asprintf(&key, "%u/%u/%u/%s/%s", t->cpu_count, t->memory_mb, t->disk_mb, layers,
		     config) < 0)
		return NULL;
	return key;
}

/* Moves every member of pl to the dead list and frees the entry (lock held). The dead list
 * always has room: it grows before anything is moved, or the members are destroyed here. */
static void pool_drop(struct warmpool *p, struct pool *pl)
{
	if (pl->n && ARRAY_RESERVE(p->dead, p->cap_dead, p->n_dead + pl->n) < 0) {
		/* Out of memory: destroy them here, under the lock, rather than leak them. */
		for (unsigned i = 0; i < pl->n; i++)
			p->ops->destroy(p->ctx, pl->members[i]);
	} else {
		for (unsigned i = 0; i < pl->n; i++)
			p->dead[p->n_dead++] = pl->members[i];
	}
	pl->n = 0;
	free(pl->key);
	pl->key = NULL;
	pl->template_id[0] = 0;
	pl->retry_usec = 0;
	pthread_cond_signal(&p->cond);
}

/* The entry for t (made, or re-keyed, as needed); NULL when out of memory. Lock held. */
static struct pool *pool_for(struct warmpool *p, const struct template_rec *t, char *key)
{
	struct pool *pl = NULL, *lru = &p->pools[0];
	for (size_t i = 0; i < ELEMENTSOF(p->pools) && !pl; i++) {
		struct pool *c = &p->pools[i];
		if (c->key && streq(c->template_id, t->id))
			pl = c;
		else if (!c->key && lru->key)
			lru = c;
		else if (c->key && lru->key && c->last_used < lru->last_used)
			lru = c;
	}
	if (pl && !streq(pl->key, key)) {
		log_info("Template %s changed: its warm sandboxes are replaced", t->id);
		pool_drop(p, pl);
	} else if (pl) {
		free(key);
		return pl;
	}
	if (!pl) {
		pl = lru;
		if (pl->key)
			pool_drop(p, pl);
	}
	if (!pl->members && !(pl->members = calloc(p->per, sizeof(void *)))) {
		free(key);
		return NULL;
	}
	snprintf(pl->template_id, sizeof(pl->template_id), "%s", t->id);
	pl->key = key;
	return pl;
}

static void *ask(struct warmpool *p, const struct template_rec *t, bool take)
{
	if (!p || !p->per)
		return NULL;
	char *key = template_key(t);
	if (!key)
		return NULL;
	void *m = NULL;
	pthread_mutex_lock(&p->lock);
	struct pool *pl = pool_for(p, t, key); /* takes key */
	if (pl) {
		pl->last_used = ++p->tick;
		if (take && pl->n > 0)
			m = pl->members[--pl->n];
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return m;
}

void warmpool_want(struct warmpool *p, const struct template_rec *t)
{
	(void)ask(p, t, false);
}

void *warmpool_take(struct warmpool *p, const struct template_rec *t)
{
	return ask(p, t, true);
}

/* The most recently used pool that is short of members and not backing off (lock held). */
static struct pool *pool_to_fill(struct warmpool *p, uint64_t now)
{
	struct pool *best = NULL;
	for (size_t i = 0; i < ELEMENTSOF(p->pools); i++) {
		struct pool *c = &p->pools[i];
		if (c->key && c->n < p->per && now >= c->retry_usec &&
		    (!best || c->last_used > best->last_used))
			best = c;
	}
	return best;
}

/* The pool entry still holding template `id` under `key`, or NULL (lock held). */
static struct pool *pool_find(struct warmpool *p, const char *id, const char *key)
{
	for (size_t i = 0; i < ELEMENTSOF(p->pools); i++) {
		struct pool *c = &p->pools[i];
		if (c->key && streq(c->template_id, id) && streq(c->key, key))
			return c;
	}
	return NULL;
}

/* Reads template `id` again; false when it is gone, not ready or no longer matches `key`. */
static bool template_current(struct warmpool *p, const char *id, const char *key,
			     struct template_rec *t)
{
	if (store_template_get(p->st, id, t) < 0 || !streq(t->status, "ready"))
		return false;
	_cleanup_free_ char *now = template_key(t);
	return now && streq(now, key);
}

/* Drops the pools whose template is gone or changed (lock held; dropped while reading). */
static void check_templates(struct warmpool *p)
{
	for (size_t i = 0; i < ELEMENTSOF(p->pools); i++) {
		if (!p->pools[i].key)
			continue;
		char id[64];
		_cleanup_free_ char *key = strdup(p->pools[i].key);
		snprintf(id, sizeof(id), "%s", p->pools[i].template_id);
		if (!key)
			continue;
		pthread_mutex_unlock(&p->lock);
		struct template_rec t = { 0 };
		bool ok = template_current(p, id, key, &t);
		template_rec_clear(&t);
		pthread_mutex_lock(&p->lock);
		struct pool *pl = pool_find(p, id, key);
		if (!ok && pl) {
			log_info("Template %s is gone or changed: its warm sandboxes are destroyed",
				 id);
			pool_drop(p, pl);
		}
	}
}

/* Starts one member for pl (lock held on entry and exit, dropped while starting). */
static void fill_one(struct warmpool *p, struct pool *pl)
{
	char id[64];
	snprintf(id, sizeof(id), "%s", pl->template_id);
	_cleanup_free_ char *key = strdup(pl->key);
	if (!key) {
		pl->retry_usec = now_usec() + RETRY_MS * 1000u;
		return;
	}
	pthread_mutex_unlock(&p->lock);
	struct template_rec t = { 0 };
	bool ok = template_current(p, id, key, &t);
	void *m = NULL;
	uint64_t t0 = now_usec();
	int r = ok ? p->ops->start(p->ctx, &t, &m) : -ESTALE;
	template_rec_clear(&t);
	pthread_mutex_lock(&p->lock);
	pl = pool_find(p, id, key);
	if (r == -ESTALE) {
		if (pl)
			pool_drop(p, pl);
		return;
	}
	if (r < 0) {
		log_warn_errno(r, "Failed to start a warm sandbox of template %s: %m", id);
		if (pl)
			pl->retry_usec = now_usec() + RETRY_MS * 1000u;
		return;
	}
	if (pl && !p->stop && pl->n < p->per) {
		pl->members[pl->n++] = m;
		log_debug("Warm sandbox of template %s ready in %.1f ms (%u/%u)", id,
			  (double)(now_usec() - t0) / 1000, pl->n, p->per);
		return;
	}
	/* Not wanted any more (the template changed, or shutdown): undo it off the lock. */
	pthread_mutex_unlock(&p->lock);
	p->ops->destroy(p->ctx, m);
	pthread_mutex_lock(&p->lock);
}

static void wait_ms(struct warmpool *p, uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000u;
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

static void *pool_main(void *arg)
{
	struct warmpool *p = arg;
	uint64_t next_check = now_usec() + CHECK_INTERVAL_MS * 1000u;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (p->n_dead) {
			void *m = p->dead[--p->n_dead];
			pthread_mutex_unlock(&p->lock);
			p->ops->destroy(p->ctx, m);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		uint64_t now = now_usec();
		if (now >= next_check) {
			check_templates(p);
			next_check = now_usec() + CHECK_INTERVAL_MS * 1000u;
			continue;
		}
		struct pool *pl = pool_to_fill(p, now);
		if (pl) {
			fill_one(p, pl);
			continue;
		}
		/* Nothing to do until a take, a want, or the next check or retry. */
		uint64_t until = next_check;
		for (size_t i = 0; i < ELEMENTSOF(p->pools); i++)
			if (p->pools[i].key && p->pools[i].n < p->per)
				until = MIN(until, p->pools[i].retry_usec);
		wait_ms(p, until > now ? (until - now + 999) / 1000 : 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int warmpool_new(unsigned per_template, struct store *st, const struct warmpool_ops *ops, void *ctx,
		 struct warmpool **out)
{
	struct warmpool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->per = per_template;
	p->st = st;
	p->ops = ops;
	p->ctx = ctx;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (p->per) {
		int r = -pthread_create(&p->thread, NULL, pool_main, p);
		if (r < 0) {
			warmpool_free(p);
			return r;
		}
		p->running = true;
	}
	*out = p;
	return 0;
}

struct warmpool *warmpool_free(struct warmpool *p)
{
	if (!p)
		return NULL;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->running)
		pthread_join(p->thread, NULL);
	for (size_t i = 0; i < ELEMENTSOF(p->pools); i++) {
		struct pool *pl = &p->pools[i];
		for (unsigned j = 0; j < pl->n; j++)
			p->ops->destroy(p->ctx, pl->members[j]);
		free(pl->members);
		free(pl->key);
	}
	for (size_t i = 0; i < p->n_dead; i++)
		p->ops->destroy(p->ctx, p->dead[i]);
	free(p->dead);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return NULL;
}
