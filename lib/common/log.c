#include "log.h"

#include <stdarg.h>
#include <pthread.h>
#include <time.h>

static const char *log_program = "hutch";
static enum log_level log_min = LOG_LEVEL_INFO;
static bool log_json = true;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_setup(const char *program, enum log_level min, bool json)
{
	log_program = program;
	log_min = min;
	log_json = json;
}

enum log_level log_get_level(void)
{
	return log_min;
}

bool log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
		if (streq(s, level_names[i])) {
			*out = (enum log_level)i;
			return true;
		}
	return false;
}

static void json_escape_to(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
}

int log_full_errno(enum log_level level, int r, const char *fmt, ...)
{
	if (level < log_min)
		return r;

	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	errno = r < 0 ? -r : r;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

	pthread_mutex_lock(&log_lock);
	if (log_json) {
		fprintf(stderr,
			"{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"program\":\"%s\",\"msg\":\"",
			when, ts.tv_nsec / 1000000, level_names[level], log_program);
		json_escape_to(stderr, msg);
		fputs("\"}\n", stderr);
	} else {
		fprintf(stderr, "%s: %s\n", log_program, msg);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
	return r;
}
