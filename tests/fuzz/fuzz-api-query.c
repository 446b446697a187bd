/*
 * The REST API's query strings: the metadata filter decoder, the state list, the paging token
 * (X-Next-Token, store_cursor_parse) and the startedAfter time, plus the %-unescaper they share.
 * Input: METADATA \0 STATES \0 CURSOR \0 STARTED_AFTER. Whatever the input: a decoded filter is
 * an object of strings, a state mask names known states only, a token parses only into what
 * store_cursor_make can produce (and a made token always parses back), times are normalised.
 */
#include <errno.h>
#include <string.h>
#include "api/api.h"
#include "common/util.h"
#include "store/store.h"
#include "fuzz.h"

static char *piece(const uint8_t **data, size_t *size)
{
	const uint8_t *end = memchr(*data, 0, *size);
	size_t len = end ? (size_t)(end - *data) : *size;
	char *s = strndup((const char *)*data, len);
	fuzz_check(s);
	*data += len + (end ? 1 : 0);
	*size -= len + (end ? 1 : 0);
	return s;
}

static void check_cursor(const char *cursor)
{
	int64_t ms = 0;
	char id[40];
	int r = store_cursor_parse(cursor, &ms, id);
	fuzz_check(r == 0 || r == -EINVAL);
	if (r < 0)
		return;
	size_t n = strnlen(id, sizeof(id));
	fuzz_check(n > 0 && n < sizeof(id));
	/* What parses must survive a round trip. */
	struct sandbox_rec rec = { .started_ms = ms };
	memcpy(rec.id, id, n + 1);
	char *again = store_cursor_make(&rec);
	fuzz_check(again);
	int64_t ms2;
	char id2[40];
	fuzz_check(store_cursor_parse(again, &ms2, id2) == 0);
	fuzz_check(ms2 == ms && streq(id2, id));
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	char *meta = piece(&data, &size);
	char *states = piece(&data, &size);
	char *cursor = piece(&data, &size);
	char *after = piece(&data, &size);

	json_t *m = NULL;
	int r = api_parse_metadata_query(meta, &m);
	fuzz_check(r == 0 || r == -EINVAL);
	if (r == 0) {
		fuzz_check(json_is_object(m));
		const char *k;
		json_t *v;
		json_object_foreach (m, k, v)
			fuzz_check(json_is_string(v));
		json_decref(m);
	}

	unsigned mask = 0;
	r = api_parse_states(states, &mask);
	fuzz_check(r == 0 || r == -EINVAL);
	if (r == 0)
		fuzz_check((mask & ~((1u << SANDBOX_STARTING) | (1u << SANDBOX_RUNNING) |
				     (1u << SANDBOX_PAUSED) | (1u << SANDBOX_STOPPING))) == 0);

	check_cursor(cursor);

	int64_t sec;
	long nsec;
	if (parse_rfc3339(after, &sec, &nsec) == 0)
		fuzz_check(nsec >= 0 && nsec < 1000000000L);

	size_t before = strlen(meta);
	if (url_unescape(meta, true) == 0)
		fuzz_check(strlen(meta) <= before);

	free(meta);
	free(states);
	free(cursor);
	free(after);
	return 0;
}
