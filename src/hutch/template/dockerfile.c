/* Dockerfile → TemplateBuildStartV2 (see dockerfile.h for the semantics). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/macro.h"
#include "common/strbuf.h"
#include "dockerfile.h"

/* Limits for hostile input: `ENV A=$A$A` doubles per line, `${a:-${b:-...}}` nests. */
#define MAX_VALUE    (1u << 20)
#define MAX_NESTING  16
#define MAX_WARNINGS 100

struct var {
	char *name;
	char *value;   /* decoded */
	char *encoded; /* as sent in ENV values: `\$` for a literal dollar, unknown refs kept */
	bool is_arg;
	bool has_value;
};

struct vars {
	struct var *v;
	size_t n;
};

/* A CMD / ENTRYPOINT / HEALTHCHECK command: exec form (argv) or shell form (text). */
struct command {
	bool set;
	json_t *argv; /* exec form */
	char *text;   /* shell form, as the current SHELL runs it */
	char *raw;    /* shell form as written */
};

struct parser {
	struct dockerfile *df;
	struct dockerfile_error *err;
	char escape;
	unsigned line;
	char *const *build_args;
	size_t n_build_args;
	bool *build_arg_used;
	struct vars global_args;
	struct vars vars;
	bool have_from;
	char *stage_name;
	char *workdir;
	bool user_set, workdir_set;
	json_t *steps;
	json_t *shell; /* NULL: ["/bin/sh", "-c"] */
	struct command cmd, entrypoint;
	char *ready;
	bool prev_heredoc;
};

static int fail(struct parser *p, const char *fmt, ...) _printf_(2, 3);
static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	p->err->line = p->line;
	vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void warn(struct parser *p, const char *fmt, ...) _printf_(2, 3);
static void warn(struct parser *p, const char *fmt, ...)
{
	struct dockerfile *df = p->df;
	if (df->n_warnings >= MAX_WARNINGS)
		return;
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char **w = realloc(df->warnings, (df->n_warnings + 1) * sizeof(*w));
	if (!w)
		return;
	df->warnings = w;
	int r = p->line ? asprintf(&w[df->n_warnings], "line %u: %s", p->line, msg)
			: asprintf(&w[df->n_warnings], "%s", msg);
	if (r >= 0)
		df->n_warnings++;
}

/* ---- variables ---- */

static void vars_clear(struct vars *vs)
{
	for (size_t i = 0; i < vs->n; i++) {
		free(vs->v[i].name);
		free(vs->v[i].value);
		free(vs->v[i].encoded);
	}
	free(vs->v);
	vs->v = NULL;
	vs->n = 0;
}

static struct var *vars_find(struct vars *vs, const char *name)
{
	for (size_t i = 0; i < vs->n; i++)
		if (streq(vs->v[i].name, name))
			return &vs->v[i];
	return NULL;
}

static char *escape_dollars(const char *s)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	for (; *s; s++)
		if ((*s == '$' ? strbuf_appends(&sb, "\\$") : strbuf_append(&sb, s, 1)) < 0)
			return NULL;
	return sb.data ? strbuf_steal(&sb) : strdup("");
}

/* Sets name (value NULL: declared without a value). encoded NULL: derived from value. */
static int vars_set(struct vars *vs, const char *name, const char *value, const char *encoded,
		    bool is_arg)
{
	struct var *v = vars_find(vs, name);
	if (!v) {
		struct var *nv = realloc(vs->v, (vs->n + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		vs->v = nv;
		v = &vs->v[vs->n];
		*v = (struct var){ .name = strdup(name) };
		if (!v->name)
			return -ENOMEM;
		vs->n++;
	}
	free(v->value);
	free(v->encoded);
	v->value = strdup(value ? value : "");
	v->encoded = encoded ? strdup(encoded) : escape_dollars(value ? value : "");
	v->is_arg = is_arg;
	v->has_value = value != NULL;
	return v->value && v->encoded ? 0 : -ENOMEM;
}

/* ---- words: quote removal, escapes and $-substitution, as Docker's shell lexer ---- */

struct lex {
	struct parser *p;
	struct vars *vars;
	const char *s;
	size_t i, n;
	bool keep_unknown; /* ENV values: undefined variables stay for the builder */
	int depth;
};

/* Both forms of a word: decoded (the value) and encoded (for ENV values). */
struct word {
	struct strbuf out, enc;
};

static void word_free(struct word *w)
{
	strbuf_free(&w->out);
	strbuf_free(&w->enc);
}

static int word_add(struct lex *lx, struct word *w, const char *out, size_t olen, const char *enc,
		    size_t elen)
{
	if (w->out.len + olen > MAX_VALUE || w->enc.len + elen > MAX_VALUE)
		return fail(lx->p, "a value is longer than %u bytes after substitution", MAX_VALUE);
	if (strbuf_append(&w->out, out, olen) < 0 || strbuf_append(&w->enc, enc, elen) < 0)
		return -ENOMEM;
	return 0;
}

static int word_char(struct lex *lx, struct word *w, char c)
{
	return c == '$' ? word_add(lx, w, "$", 1, "\\$", 2) : word_add(lx, w, &c, 1, &c, 1);
}

static int lex_word(struct lex *lx, bool split, char stop, struct word *w);

static bool is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* ${NAME<op>WORD}: lx->i is at "${". */
static int lex_braced(struct lex *lx, struct word *w)
{
	struct parser *p = lx->p;
	size_t start = lx->i, j = lx->i + 2;
	while (j < lx->n && is_name_char(lx->s[j]))
		j++;
	if (j == lx->i + 2 || j >= lx->n)
		return fail(p, "bad substitution: %s",
			    j >= lx->n ? "missing '}'" : "no variable name");
	_cleanup_free_ char *name = strndup(lx->s + lx->i + 2, j - lx->i - 2);
	if (!name)
		return -ENOMEM;
	bool colon = false;
	char op = 0;
	struct word arg = { 0 };
	if (lx->s[j] != '}') {
		if (lx->s[j] == ':') {
			colon = true;
			j++;
		}
		if (j >= lx->n || !strchr("-+?", lx->s[j]))
			return fail(p, "bad substitution: unsupported modifier in ${%s...}", name);
		op = lx->s[j++];
		if (lx->depth >= MAX_NESTING)
			return fail(p, "substitutions nested too deeply");
		struct lex sub = *lx;
		sub.i = j;
		sub.depth++;
		int r = lex_word(&sub, false, '}', &arg);
		if (r < 0) {
			word_free(&arg);
			return r;
		}
		j = sub.i;
		if (j >= lx->n || lx->s[j] != '}') {
			word_free(&arg);
			return fail(p, "bad substitution: missing '}' in ${%s...}", name);
		}
	}
	lx->i = j + 1;
	struct var *v = vars_find(lx->vars, name);
	bool unset = !v || !v->has_value;
	bool empty = unset || !*v->value;
	int r = 0;
	if (unset && lx->keep_unknown) {
		r = word_add(lx, w, lx->s + start, lx->i - start, lx->s + start, lx->i - start);
	} else if (op == '-' && (colon ? empty : unset)) {
		r = word_add(lx, w, arg.out.data ?: "", arg.out.len, arg.enc.data ?: "",
			     arg.enc.len);
	} else if (op == '+') {
		if (!(colon ? empty : unset))
			r = word_add(lx, w, arg.out.data ?: "", arg.out.len, arg.enc.data ?: "",
				     arg.enc.len);
	} else if (op == '?' && (colon ? empty : unset)) {
		r = fail(p, "%s: %s", name, arg.out.len ? arg.out.data : "parameter not set");
	} else if (!unset) {
		r = word_add(lx, w, v->value, strlen(v->value), v->encoded, strlen(v->encoded));
	} else if (!op) {
		warn(p, "$%s is not defined here; it is replaced by an empty value", name);
	}
	word_free(&arg);
	return r;
}

/* $NAME or ${...}: lx->i is at '$'. */
static int lex_dollar(struct lex *lx, struct word *w)
{
	if (lx->i + 1 < lx->n && lx->s[lx->i + 1] == '{')
		return lex_braced(lx, w);
	size_t start = lx->i, j = lx->i + 1;
	while (j < lx->n && is_name_char(lx->s[j]))
		j++;
	if (j == start + 1) {
		lx->i++;
		return word_char(lx, w, '$');
	}
	_cleanup_free_ char *name = strndup(lx->s + start + 1, j - start - 1);
	if (!name)
		return -ENOMEM;
	lx->i = j;
	struct var *v = vars_find(lx->vars, name);
	if (v && v->has_value)
		return word_add(lx, w, v->value, strlen(v->value), v->encoded, strlen(v->encoded));
	if (lx->keep_unknown)
		return word_add(lx, w, lx->s + start, j - start, lx->s + start, j - start);
	warn(lx->p, "$%s is not defined here; it is replaced by an empty value", name);
	return 0;
}

/*
 * One word from lx->i: stops at unquoted whitespace when split, at an unquoted `stop` (the '}'
 * of ${X:-word}), or at the end. Quotes are removed; the escape character quotes the next one.
 */
static int lex_word(struct lex *lx, bool split, char stop, struct word *w)
{
	struct parser *p = lx->p;
	char esc = p->escape;
	int r = 0;
	while (r >= 0 && lx->i < lx->n) {
		char c = lx->s[lx->i];
		if ((stop && c == stop) || (split && isspace((unsigned char)c)))
			break;
		if (c == esc) {
			if (lx->i + 1 < lx->n)
				r = word_char(lx, w, lx->s[lx->i + 1]);
			lx->i += 2;
		} else if (c == '\'') {
			const char *end = memchr(lx->s + lx->i + 1, '\'', lx->n - lx->i - 1);
			if (!end)
				return fail(p, "unterminated single quote");
			for (const char *q = lx->s + lx->i + 1; r >= 0 && q < end; q++)
				r = word_char(lx, w, *q);
			lx->i = (size_t)(end - lx->s) + 1;
		} else if (c == '"') {
			lx->i++;
			while (r >= 0 && lx->i < lx->n && lx->s[lx->i] != '"') {
				char d = lx->s[lx->i];
				if (d == esc && lx->i + 1 < lx->n &&
				    (lx->s[lx->i + 1] == '"' || lx->s[lx->i + 1] == '$' ||
				     lx->s[lx->i + 1] == esc)) {
					r = word_char(lx, w, lx->s[lx->i + 1]);
					lx->i += 2;
				} else if (d == '$') {
					r = lex_dollar(lx, w);
				} else {
					r = word_char(lx, w, d);
					lx->i++;
				}
			}
			if (r >= 0 && lx->i >= lx->n)
				return fail(p, "unterminated double quote");
			lx->i++;
		} else if (c == '$') {
			r = lex_dollar(lx, w);
		} else {
			r = word_char(lx, w, c);
			lx->i++;
		}
	}
	return r;
}

/* Splits s into substituted words (decoded in words[], encoded in encs[] when asked). */
static int lex_words(struct parser *p, struct vars *vars, const char *s, bool keep_unknown,
		     char ***words, char ***encs, size_t *n)
{
	struct lex lx = {
		.p = p, .vars = vars, .s = s, .n = strlen(s), .keep_unknown = keep_unknown
	};
	char **ws = NULL, **es = NULL;
	size_t count = 0;
	int r = 0;
	for (;;) {
		while (lx.i < lx.n && isspace((unsigned char)s[lx.i]))
			lx.i++;
		if (lx.i >= lx.n)
			break;
		struct word w = { 0 };
		r = lex_word(&lx, true, 0, &w);
		char **nw = r < 0 ? NULL : realloc(ws, (count + 1) * sizeof(*nw));
		if (nw)
			ws = nw;
		char **ne = nw ? realloc(es, (count + 1) * sizeof(*ne)) : NULL;
		if (ne)
			es = ne;
		if (!ne) {
			word_free(&w);
			r = r < 0 ? r : -ENOMEM;
			break;
		}
		ws[count] = w.out.data ? strbuf_steal(&w.out) : strdup("");
		es[count] = w.enc.data ? strbuf_steal(&w.enc) : strdup("");
		count++;
		word_free(&w);
		if (!ws[count - 1] || !es[count - 1]) {
			r = -ENOMEM;
			break;
		}
	}
	if (r < 0) {
		for (size_t i = 0; i < count; i++) {
			free(ws[i]);
			free(es[i]);
		}
		free(ws);
		free(es);
		return r;
	}
	*words = ws;
	*n = count;
	if (encs)
		*encs = es;
	else {
		for (size_t i = 0; i < count; i++)
			free(es[i]);
		free(es);
	}
	return 0;
}

/* The whole of s as one word (spaces kept), substituted. */
static int lex_one(struct parser *p, struct vars *vars, const char *s, bool keep_unknown,
		   char **out, char **enc)
{
	struct lex lx = {
		.p = p, .vars = vars, .s = s, .n = strlen(s), .keep_unknown = keep_unknown
	};
	struct word w = { 0 };
	int r = lex_word(&lx, false, 0, &w);
	if (r >= 0) {
		*out = w.out.data ? strbuf_steal(&w.out) : strdup("");
		if (enc)
			*enc = w.enc.data ? strbuf_steal(&w.enc) : strdup("");
		if (!*out || (enc && !*enc))
			r = -ENOMEM;
	}
	word_free(&w);
	return r;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- small helpers ---- */

char *dockerfile_shell_quote(const char *s)
{
	static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "0123456789_-+=/.,:@%";
	if (*s && strspn(s, safe) == strlen(s))
		return strdup(s);
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	if (strbuf_append(&sb, "'", 1) < 0)
		return NULL;
	for (; *s; s++)
		if ((*s == '\'' ? strbuf_appends(&sb, "'\\''") : strbuf_append(&sb, s, 1)) < 0)
			return NULL;
	if (strbuf_append(&sb, "'", 1) < 0)
		return NULL;
	return strbuf_steal(&sb);
}

/* Shell-quotes and joins a JSON array of strings. */
static char *quote_join(const json_t *argv)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	size_t i;
	json_t *a;
	json_array_foreach (argv, i, a) {
		_cleanup_free_ char *q = dockerfile_shell_quote(json_string_value(a));
		if (!q || (i && strbuf_append(&sb, " ", 1) < 0) || strbuf_appends(&sb, q) < 0)
			return NULL;
	}
	return sb.data ? strbuf_steal(&sb) : strdup("");
}

/* The exec form: a JSON array of strings, or NULL (then it is the shell form). */
static json_t *parse_exec_form(const char *rest)
{
	if (rest[0] != '[')
		return NULL;
	json_t *j = json_loads(rest, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_array(j)) {
		json_decref(j);
		return NULL;
	}
	size_t i;
	json_t *a;
	json_array_foreach (j, i, a) {
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a)) {
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

/* Normalises an absolute path: no "//", ".", ".."; no trailing slash but for "/". */
static char *path_normalize_abs(const char *path)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	const char *s = path;
	while (*s) {
		while (*s == '/')
			s++;
		size_t len = strcspn(s, "/");
		if (len == 0)
			break;
		if (len == 1 && s[0] == '.') {
		} else if (len == 2 && s[0] == '.' && s[1] == '.') {
			char *slash = sb.data ? strrchr(sb.data, '/') : NULL;
			if (slash)
				sb.len = (size_t)(slash - sb.data), sb.data[sb.len] = 0;
		} else if (strbuf_append(&sb, "/", 1) < 0 || strbuf_append(&sb, s, len) < 0) {
			return NULL;
		}
		s += len;
	}
	return sb.len ? strbuf_steal(&sb) : strdup("/");
}

/* dir against the current WORKDIR, normalised. */
static char *resolve_path(struct parser *p, const char *dir)
{
	if (dir[0] == '/')
		return path_normalize_abs(dir);
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "%s/%s", p->workdir, dir) < 0)
		return NULL;
	return path_normalize_abs(joined);
}

/* A COPY source relative to the context: leading '/' dropped, normalised, never above it. */
static int normalize_source(struct parser *p, const char *src, char **out)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	const char *s = src;
	while (*s) {
		while (*s == '/')
			s++;
		size_t len = strcspn(s, "/");
		if (len == 0)
			break;
		if (len == 1 && s[0] == '.') {
		} else if (len == 2 && s[0] == '.' && s[1] == '.') {
			if (!sb.len)
				return fail(p, "COPY source '%s' is outside the build context",
					    src);
			char *slash = strrchr(sb.data, '/');
			sb.len = slash ? (size_t)(slash - sb.data) : 0;
			sb.data[sb.len] = 0;
		} else if ((sb.len && strbuf_append(&sb, "/", 1) < 0) ||
			   strbuf_append(&sb, s, len) < 0) {
			return -ENOMEM;
		}
		s += len;
	}
	*out = sb.len ? strbuf_steal(&sb) : strdup(".");
	return *out ? 0 : -ENOMEM;
}

static int add_step(struct parser *p, const char *type, json_t *args)
{
	if (!args)
		return -ENOMEM;
	json_t *step = json_pack("{s:s, s:o, s:b}", "type", type, "args", args, "force", 0);
	if (!step || json_array_append_new(p->steps, step) < 0)
		return -ENOMEM;
	return 0;
}

static int add_step1(struct parser *p, const char *type, const char *arg)
{
	return add_step(p, type, json_pack("[s]", arg));
}

/* A shell-form command as the current SHELL runs it. */
static char *shell_wrap(struct parser *p, const char *cmd)
{
	if (!p->shell)
		return strdup(cmd);
	json_t *argv = json_copy(p->shell);
	if (!argv || json_array_append_new(argv, json_string(cmd)) < 0) {
		json_decref(argv);
		return NULL;
	}
	char *s = quote_join(argv);
	json_decref(argv);
	return s;
}

/* ---- flags (--name=value before the arguments) ---- */

struct flag {
	char name[32];
	char *value; /* substituted; NULL for a bare --name */
};

/* Parses leading --flags of *rest (advancing it); at most max of them. */
static int parse_flags(struct parser *p, const char **rest, struct flag *flags, size_t max,
		       size_t *n)
{
	*n = 0;
	const char *s = *rest;
	while (s[0] == '-' && s[1] == '-') {
		size_t len = strcspn(s, " \t");
		const char *eq = memchr(s, '=', len);
		size_t nlen = (eq ? (size_t)(eq - s) : len) - 2;
		if (*n >= max || nlen == 0 || nlen >= sizeof(flags->name))
			return fail(p, "too many or malformed flags");
		struct flag *f = &flags[(*n)++];
		memcpy(f->name, s + 2, nlen);
		f->name[nlen] = 0;
		f->value = NULL;
		if (eq) {
			_cleanup_free_ char *raw = strndup(eq + 1, len - nlen - 3);
			if (!raw)
				return -ENOMEM;
			int r = lex_one(p, &p->vars, raw, false, &f->value, NULL);
			if (r < 0)
				return r;
		}
		s += len;
		while (*s == ' ' || *s == '\t')
			s++;
	}
	*rest = s;
	return 0;
}

static void flags_free(struct flag *flags, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(flags[i].value);
}

/* ---- instructions ---- */

static int do_from(struct parser *p, const char *rest)
{
	struct flag flags[4];
	size_t nf = 0;
	int r = parse_flags(p, &rest, flags, ELEMENTSOF(flags), &nf);
	for (size_t i = 0; r >= 0 && i < nf; i++) {
		if (!streq(flags[i].name, "platform"))
			r = fail(p, "FROM --%s is not supported", flags[i].name);
		else if (!streq(flags[i].value, "linux/amd64") && !streq(flags[i].value, ""))
			warn(p, "FROM --platform=%s ignored: sandboxes run linux/amd64",
			     flags[i].value ?: "");
	}
	flags_free(flags, nf);
	if (r < 0)
		return r;
	char **w = NULL;
	size_t n = 0;
	r = lex_words(p, &p->global_args, rest, false, &w, NULL, &n);
	if (r < 0)
		return r;
	if (n == 0 || (n != 1 && n != 3) || (n == 3 && strcasecmp(w[1], "AS") != 0) || !*w[0]) {
		strv_free(w, n);
		return fail(p, "FROM takes IMAGE [AS NAME]");
	}
	if (!p->have_from) {
		p->df->from = strdup(w[0]);
		p->have_from = true;
		r = p->df->from ? 0 : -ENOMEM;
		if (r >= 0)
			r = add_step1(p, "USER", "root");
		if (r >= 0)
			r = add_step1(p, "WORKDIR", "/");
	} else if (p->stage_name && strcasecmp(w[0], p->stage_name) == 0) {
		/* Continues the previous stage: only its ARGs go out of scope. */
		struct vars keep = { 0 };
		for (size_t i = 0; r >= 0 && i < p->vars.n; i++)
			if (!p->vars.v[i].is_arg)
				r = vars_set(&keep, p->vars.v[i].name, p->vars.v[i].value,
					     p->vars.v[i].encoded, false);
		vars_clear(&p->vars);
		p->vars = keep;
	} else {
		r = fail(p,
			 "multi-stage builds are not supported: this FROM does not continue the "
			 "previous stage; build each stage as a template and use FROM <template>");
	}
	free(p->stage_name);
	p->stage_name = n == 3 ? strdup(w[2]) : NULL;
	strv_free(w, n);
	return r;
}

static int arg_prefix(struct parser *p, struct strbuf *sb)
{
	bool any = false;
	for (size_t i = 0; i < p->vars.n; i++) {
		struct var *v = &p->vars.v[i];
		if (!v->is_arg || !v->has_value)
			continue;
		_cleanup_free_ char *q = dockerfile_shell_quote(v->value);
		if (!q || strbuf_printf(sb, "%s%s=%s", any ? " " : "export ", v->name, q) < 0)
			return -ENOMEM;
		any = true;
	}
	return any ? strbuf_appends(sb, "; ") : 0;
}

static int do_run(struct parser *p, const char *rest)
{
	struct flag flags[8];
	size_t nf = 0;
	int r = parse_flags(p, &rest, flags, ELEMENTSOF(flags), &nf);
	for (size_t i = 0; r >= 0 && i < nf; i++) {
		if (streq(flags[i].name, "network"))
			warn(p, "RUN --network ignored: builds have network access");
		else
			r = fail(p, "RUN --%s is not supported", flags[i].name);
	}
	flags_free(flags, nf);
	if (r < 0)
		return r;
	if (!*rest)
		return fail(p, "RUN needs a command");
	_cleanup_free_ char *cmd = NULL;
	json_t *argv = parse_exec_form(rest);
	if (argv) {
		if (json_array_size(argv) == 0) {
			json_decref(argv);
			return fail(p, "RUN [] needs a command");
		}
		cmd = quote_join(argv);
		json_decref(argv);
	} else {
		cmd = shell_wrap(p, rest);
	}
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	if (!cmd || arg_prefix(p, &sb) < 0 || strbuf_appends(&sb, cmd) < 0)
		return -ENOMEM;
	return add_step1(p, "RUN", sb.data);
}

static bool is_url(const char *s)
{
	return startswith(s, "http://") || startswith(s, "https://") || startswith(s, "git@") ||
	       startswith(s, "git://") || startswith(s, "ssh://");
}

static int add_copy(struct parser *p, const char *src, const char *dest, const char *chown,
		    const char *mode, bool add)
{
	struct dockerfile *df = p->df;
	_cleanup_free_ char *nsrc = NULL;
	int r = normalize_source(p, src, &nsrc);
	if (r < 0)
		return r;
	struct dockerfile_copy *c = realloc(df->copies, (df->n_copies + 1) * sizeof(*c));
	if (!c)
		return -ENOMEM;
	df->copies = c;
	c = &df->copies[df->n_copies];
	*c = (struct dockerfile_copy){ .step = json_array_size(p->steps),
				       .add = add,
				       .line = p->line };
	c->src = strdup(nsrc);
	c->dest = strdup(dest);
	if (!c->src || !c->dest) {
		free(c->src);
		free(c->dest);
		return -ENOMEM;
	}
	df->n_copies++;
	return add_step(p, add ? "ADD" : "COPY",
			json_pack("[s,s,s,s]", nsrc, dest, chown ?: "", mode ?: ""));
}

static int copy_flags(struct parser *p, const char **rest, bool add, char **chown, char **mode)
{
	struct flag flags[8];
	size_t nf = 0;
	int r = parse_flags(p, rest, flags, ELEMENTSOF(flags), &nf);
	const char *kw = add ? "ADD" : "COPY";
	for (size_t i = 0; r >= 0 && i < nf; i++) {
		const char *name = flags[i].name, *val = flags[i].value;
		if (streq(name, "from"))
			r = fail(p, "%s --from (multi-stage builds) is not supported", kw);
		else if (streq(name, "link"))
			; /* a layer-caching hint: every COPY is its own layer already */
		else if ((streq(name, "chown") || streq(name, "chmod")) && isempty(val))
			r = fail(p, "%s --%s needs a value", kw, name);
		else if (streq(name, "chown")) {
			free(*chown);
			*chown = strdup(val);
		} else if (streq(name, "chmod")) {
			size_t len = strlen(val);
			if (len > 4 || strspn(val, "01234567") != len)
				r = fail(p, "%s --chmod=%s: give an octal mode such as 0755", kw,
					 val);
			else {
				free(*mode);
				if (asprintf(mode, "%04lo", strtoul(val, NULL, 8)) < 0)
					*mode = NULL, r = -ENOMEM;
			}
		} else {
			r = fail(p, "%s --%s is not supported", kw, name);
		}
	}
	flags_free(flags, nf);
	return r;
}

static int do_copy(struct parser *p, const char *rest, bool add)
{
	const char *kw = add ? "ADD" : "COPY";
	_cleanup_free_ char *chown = NULL, *mode = NULL;
	int r = copy_flags(p, &rest, add, &chown, &mode);
	if (r < 0)
		return r;
	char **w = NULL;
	size_t n = 0;
	json_t *argv = parse_exec_form(rest);
	if (argv) {
		/* Docker substitutes variables in the exec form of COPY/ADD too. */
		n = json_array_size(argv);
		w = calloc(n ? n : 1, sizeof(*w));
		for (size_t i = 0; w && r >= 0 && i < n; i++)
			r = lex_one(p, &p->vars, json_string_value(json_array_get(argv, i)), false,
				    &w[i], NULL);
		json_decref(argv);
		if (!w)
			r = -ENOMEM;
	} else {
		r = lex_words(p, &p->vars, rest, false, &w, NULL, &n);
	}
	if (r >= 0 && n < 2)
		r = fail(p, "%s needs a source and a destination", kw);
	const char *dest = r >= 0 ? w[n - 1] : "";
	size_t dlen = strlen(dest);
	bool dir = dlen == 0 || dest[dlen - 1] == '/' || streq(dest, ".") || streq(dest, "..") ||
		   (dlen >= 2 && streq(dest + dlen - 2, "/.")) ||
		   (dlen >= 3 && streq(dest + dlen - 3, "/.."));
	if (r >= 0 && n > 2 && !dir)
		r = fail(p, "%s with several sources needs a destination directory ending in /",
			 kw);
	_cleanup_free_ char *abs = r >= 0 ? resolve_path(p, dest) : NULL;
	_cleanup_free_ char *full = NULL;
	if (r >= 0 &&
	    (!abs || asprintf(&full, "%s%s", abs, dir && !streq(abs, "/") ? "/" : "") < 0))
		r = -ENOMEM;
	for (size_t i = 0; r >= 0 && i + 1 < n; i++) {
		if (add && is_url(w[i]))
			r = fail(p,
				 "ADD of a URL or git repository (%s) is not supported: "
				 "download it in a RUN step",
				 w[i]);
		else if (!*w[i])
			r = fail(p, "%s: empty source", kw);
		else
			r = add_copy(p, w[i], full, chown, mode, add);
	}
	strv_free(w, n);
	return r;
}

static int do_env(struct parser *p, const char *rest)
{
	if (!*rest)
		return fail(p, "ENV needs NAME=VALUE");
	/* The first raw word decides the form: NAME=VALUE... or NAME VALUE. */
	bool pairs = false;
	for (const char *s = rest; *s && !isspace((unsigned char)*s); s++) {
		if (*s == '=') {
			pairs = true;
			break;
		}
		if (*s == p->escape && s[1])
			s++;
	}
	json_t *args = json_array();
	char **keys = NULL, **vals = NULL, **encs = NULL;
	size_t n = 0;
	int r = args ? 0 : -ENOMEM;
	if (r >= 0 && pairs) {
		r = lex_words(p, &p->vars, rest, true, &vals, &encs, &n);
		keys = r >= 0 ? calloc(n ? n : 1, sizeof(*keys)) : NULL;
		if (r >= 0 && !keys)
			r = -ENOMEM;
		for (size_t i = 0; r >= 0 && i < n; i++) {
			char *eq = strchr(vals[i], '=');
			if (!eq || eq == vals[i]) {
				r = fail(p, "ENV: '%s' is not NAME=VALUE", vals[i]);
				break;
			}
			keys[i] = strndup(vals[i], (size_t)(eq - vals[i]));
			memmove(vals[i], eq + 1, strlen(eq + 1) + 1);
			char *eeq = strchr(encs[i], '=');
			if (eeq)
				memmove(encs[i], eeq + 1, strlen(eeq + 1) + 1);
			if (!keys[i])
				r = -ENOMEM;
		}
	} else if (r >= 0) {
		size_t klen = strcspn(rest, " \t");
		const char *v = rest + klen;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!*v)
			r = fail(p, "ENV %s needs a value (ENV NAME VALUE or ENV NAME=VALUE)",
				 rest);
		n = 1;
		keys = calloc(1, sizeof(*keys));
		vals = calloc(1, sizeof(*vals));
		encs = calloc(1, sizeof(*encs));
		if (r >= 0 && (!keys || !vals || !encs || !(keys[0] = strndup(rest, klen))))
			r = -ENOMEM;
		if (r >= 0)
			r = lex_one(p, &p->vars, v, true, &vals[0], &encs[0]);
	}
	/* Substitution saw the old values; apply afterwards, as Docker does. */
	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = vars_set(&p->vars, keys[i], vals[i], encs[i], false);
		if (r >= 0 && (json_array_append_new(args, json_string(keys[i])) < 0 ||
			       json_array_append_new(args, json_string(encs[i])) < 0))
			r = -ENOMEM;
	}
	if (r >= 0 && n == 0)
		r = fail(p, "ENV needs NAME=VALUE");
	strv_free(keys, n);
	strv_free(vals, n);
	strv_free(encs, n);
	if (r < 0) {
		json_decref(args);
		return r;
	}
	return add_step(p, "ENV", args);
}

static const char *build_arg(struct parser *p, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = p->n_build_args; i-- > 0;) {
		const char *a = p->build_args[i];
		if (strncmp(a, name, len) == 0 && a[len] == '=') {
			p->build_arg_used[i] = true;
			return a + len + 1;
		}
	}
	return NULL;
}

static int do_arg(struct parser *p, const char *rest)
{
	struct vars *scope = p->have_from ? &p->vars : &p->global_args;
	char **w = NULL;
	size_t n = 0;
	int r = lex_words(p, scope, rest, false, &w, NULL, &n);
	if (r >= 0 && n == 0)
		r = fail(p, "ARG needs a NAME[=DEFAULT]");
	for (size_t i = 0; r >= 0 && i < n; i++) {
		char *eq = strchr(w[i], '=');
		if (eq)
			*eq = 0;
		const char *name = w[i];
		if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "0123456789_") != strlen(name)) {
			r = fail(p, "ARG: '%s' is not a valid name", name);
			break;
		}
		const char *value = build_arg(p, name);
		if (!value)
			value = eq ? eq + 1 : NULL;
		if (!value && p->have_from) {
			struct var *g = vars_find(&p->global_args, name);
			value = g && g->has_value ? g->value : NULL;
		}
		/* An ENV of the same name wins over the ARG, as in Docker. */
		struct var *v = vars_find(&p->vars, name);
		if (p->have_from && v && !v->is_arg)
			continue;
		r = vars_set(scope, name, value, NULL, true);
	}
	strv_free(w, n);
	return r;
}

static int do_workdir(struct parser *p, const char *rest)
{
	_cleanup_free_ char *dir = NULL;
	int r = lex_one(p, &p->vars, rest, false, &dir, NULL);
	if (r < 0)
		return r;
	if (!*dir)
		return fail(p, "WORKDIR needs a directory");
	char *abs = resolve_path(p, dir);
	if (!abs)
		return -ENOMEM;
	free(p->workdir);
	p->workdir = abs;
	p->workdir_set = true;
	return add_step1(p, "WORKDIR", abs);
}

static int do_user(struct parser *p, const char *rest)
{
	_cleanup_free_ char *user = NULL;
	int r = lex_one(p, &p->vars, rest, false, &user, NULL);
	if (r < 0)
		return r;
	char *colon = strchr(user, ':');
	if (colon) {
		warn(p, "USER %s: the group is ignored, the user's own groups apply", user);
		*colon = 0;
	}
	if (!*user || strpbrk(user, " \t"))
		return fail(p, "USER takes one user name or uid");
	p->user_set = true;
	return add_step1(p, "USER", user);
}

static int do_command(struct parser *p, const char *rest, struct command *c, const char *kw)
{
	json_decref(c->argv);
	free(c->text);
	free(c->raw);
	*c = (struct command){ .set = true };
	c->argv = parse_exec_form(rest);
	if (c->argv)
		return 0;
	if (!*rest)
		return fail(p, "%s needs a command", kw);
	c->text = shell_wrap(p, rest);
	c->raw = strdup(rest);
	return c->text && c->raw ? 0 : -ENOMEM;
}

static int do_healthcheck(struct parser *p, const char *rest)
{
	struct flag flags[8];
	size_t nf = 0;
	int r = parse_flags(p, &rest, flags, ELEMENTSOF(flags), &nf);
	flags_free(flags, nf);
	if (r < 0)
		return r;
	size_t kw = strcspn(rest, " \t");
	if (kw == 4 && strncasecmp(rest, "NONE", 4) == 0) {
		warn(p, "HEALTHCHECK NONE ignored");
		return 0;
	}
	if (kw != 3 || strncasecmp(rest, "CMD", 3) != 0)
		return fail(p, "HEALTHCHECK takes [OPTIONS] CMD command, or NONE");
	rest += 3;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	struct command c = { 0 };
	r = do_command(p, rest, &c, "HEALTHCHECK CMD");
	if (r >= 0) {
		if (nf)
			warn(p, "HEALTHCHECK options ignored: the command becomes the ready "
				"command, run until it succeeds");
		free(p->ready);
		p->ready = c.argv ? quote_join(c.argv) : TAKE_PTR(c.text);
		r = p->ready ? 0 : -ENOMEM;
	}
	json_decref(c.argv);
	free(c.text);
	free(c.raw);
	return r;
}

static int do_shell(struct parser *p, const char *rest)
{
	json_t *argv = parse_exec_form(rest);
	if (!argv || json_array_size(argv) == 0) {
		json_decref(argv);
		return fail(p, "SHELL takes a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]");
	}
	json_decref(p->shell);
	p->shell = argv;
	if (json_array_size(argv) == 2 &&
	    streq(json_string_value(json_array_get(argv, 0)), "/bin/sh") &&
	    streq(json_string_value(json_array_get(argv, 1)), "-c"))
		p->shell = (json_decref(argv), NULL);
	return 0;
}

static int instruction(struct parser *p, const char *kw, const char *rest)
{
	static const char *const ignored[] = { "EXPOSE", "LABEL",      "MAINTAINER",
					       "VOLUME", "STOPSIGNAL", "ONBUILD" };
	if (strcasecmp(kw, "FROM") == 0)
		return do_from(p, rest);
	if (strcasecmp(kw, "ARG") == 0)
		return do_arg(p, rest);
	if (!p->have_from)
		return fail(p, "%s before FROM: a Dockerfile starts with FROM (ARG may precede it)",
			    kw);
	if (strcasecmp(kw, "RUN") == 0)
		return do_run(p, rest);
	if (strcasecmp(kw, "COPY") == 0)
		return do_copy(p, rest, false);
	if (strcasecmp(kw, "ADD") == 0)
		return do_copy(p, rest, true);
	if (strcasecmp(kw, "ENV") == 0)
		return do_env(p, rest);
	if (strcasecmp(kw, "WORKDIR") == 0)
		return do_workdir(p, rest);
	if (strcasecmp(kw, "USER") == 0)
		return do_user(p, rest);
	if (strcasecmp(kw, "CMD") == 0)
		return do_command(p, rest, &p->cmd, "CMD");
	if (strcasecmp(kw, "ENTRYPOINT") == 0)
		return do_command(p, rest, &p->entrypoint, "ENTRYPOINT");
	if (strcasecmp(kw, "HEALTHCHECK") == 0)
		return do_healthcheck(p, rest);
	if (strcasecmp(kw, "SHELL") == 0)
		return do_shell(p, rest);
	for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
		if (strcasecmp(kw, ignored[i]) == 0) {
			warn(p, "%s ignored%s", ignored[i],
			     i == 0 ? ": every port of a sandbox is reachable" : "");
			return 0;
		}
	return fail(p, "unknown instruction '%.40s'%s", kw,
		    p->prev_heredoc ? " (heredocs are not supported)" : "");
}

/* ---- lines ---- */

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)s[i]))
			return false;
	return true;
}

static bool comment(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	return i < n && s[i] == '#';
}

/* `# key=value` at the top of the file: 1 when it was a directive, 0 when not. */
static int directive(struct parser *p, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	if (i >= n || s[i] != '#')
		return 0;
	i++;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	size_t k = i;
	while (i < n && isalpha((unsigned char)s[i]))
		i++;
	size_t klen = i - k;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	if (klen == 0 || i >= n || s[i] != '=')
		return 0;
	i++;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	size_t v = i, vend = n;
	while (vend > v && isspace((unsigned char)s[vend - 1]))
		vend--;
	if (klen == 6 && strncasecmp(s + k, "escape", 6) == 0) {
		if (vend - v != 1 || (s[v] != '\\' && s[v] != '`'))
			return fail(p, "the escape directive takes \\ or `");
		p->escape = s[v];
		return 1;
	}
	if ((klen == 6 && strncasecmp(s + k, "syntax", 6) == 0) ||
	    (klen == 5 && strncasecmp(s + k, "check", 5) == 0))
		return 1;
	return 0;
}

/* Strips a trailing escape (+ spaces): true when the line continues. */
static bool continues(const struct parser *p, const char *s, size_t *n)
{
	size_t e = *n;
	while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\t'))
		e--;
	if (e > 0 && s[e - 1] == p->escape) {
		*n = e - 1;
		return true;
	}
	return false;
}

static int logical_line(struct parser *p, char *text)
{
	char *kw = text;
	while (isspace((unsigned char)*kw))
		kw++;
	char *rest = kw + strcspn(kw, " \t");
	if (*rest)
		*rest++ = 0;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	size_t len = strlen(rest);
	while (len > 0 && isspace((unsigned char)rest[len - 1]))
		rest[--len] = 0;
	int r = instruction(p, kw, rest);
	p->prev_heredoc = strstr(rest, "<<") != NULL;
	return r;
}

static int parse_lines(struct parser *p, const char *text, size_t len)
{
	_cleanup_strbuf_ struct strbuf cur = { 0 };
	bool in_directives = true, in_instr = false;
	unsigned lineno = 0;
	size_t pos = 0;
	while (pos < len) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;
		pos += n + (nl ? 1 : 0);
		lineno++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (in_directives) {
			p->line = lineno;
			int d = directive(p, s, n);
			if (d < 0)
				return d;
			if (d > 0)
				continue;
			in_directives = false;
		}
		if (!in_instr) {
			if (blank(s, n) || comment(s, n))
				continue;
			p->line = lineno;
			strbuf_reset(&cur);
		} else if (blank(s, n) || comment(s, n)) {
			continue; /* inside a continuation: skipped, as Docker does */
		}
		in_instr = continues(p, s, &n);
		if (strbuf_append(&cur, s, n) < 0)
			return -ENOMEM;
		if (!in_instr) {
			int r = logical_line(p, cur.data);
			if (r < 0)
				return r;
		}
	}
	if (in_instr)
		return logical_line(p, cur.data);
	return 0;
}

/* ---- result ---- */

static int finish(struct parser *p)
{
	struct dockerfile *df = p->df;
	p->line = 0;
	if (!p->have_from)
		return fail(p, "the Dockerfile has no FROM instruction");
	if (!p->user_set && add_step1(p, "USER", "user") < 0)
		return -ENOMEM;
	if (!p->workdir_set && add_step1(p, "WORKDIR", "/home/user") < 0)
		return -ENOMEM;
	_cleanup_free_ char *start = NULL;
	if (p->entrypoint.set && !p->entrypoint.argv) {
		start = strdup(p->entrypoint.text);
	} else if (p->entrypoint.set || p->cmd.set) {
		json_t *argv = json_array();
		if (p->entrypoint.set)
			json_array_extend(argv, p->entrypoint.argv);
		if (p->cmd.set && p->cmd.argv) {
			json_array_extend(argv, p->cmd.argv);
		} else if (p->cmd.set && p->entrypoint.set) {
			json_t *sh =
			    p->shell ? json_copy(p->shell) : json_pack("[s,s]", "/bin/sh", "-c");
			json_array_extend(argv, sh);
			json_array_append_new(argv, json_string(p->cmd.raw));
			json_decref(sh);
		}
		start = p->cmd.set && !p->cmd.argv && !p->entrypoint.set ? strdup(p->cmd.text)
									 : quote_join(argv);
		json_decref(argv);
	}
	if ((p->entrypoint.set || p->cmd.set) && !start)
		return -ENOMEM;
	df->recipe =
	    json_pack("{s:s, s:b, s:O}", "fromImage", df->from, "force", 0, "steps", p->steps);
	if (!df->recipe)
		return -ENOMEM;
	if (start && *start && json_object_set_new(df->recipe, "startCmd", json_string(start)) < 0)
		return -ENOMEM;
	if (p->ready && json_object_set_new(df->recipe, "readyCmd", json_string(p->ready)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_build_args; i++)
		if (!p->build_arg_used[i]) {
			size_t klen = strcspn(p->build_args[i], "=");
			warn(p, "build arg %.*s is not declared by any ARG", (int)MIN(klen, 100),
			     p->build_args[i]);
		}
	return 0;
}

struct dockerfile *dockerfile_free(struct dockerfile *df)
{
	if (!df)
		return NULL;
	json_decref(df->recipe);
	free(df->from);
	for (size_t i = 0; i < df->n_copies; i++) {
		free(df->copies[i].src);
		free(df->copies[i].dest);
	}
	free(df->copies);
	strv_free(df->warnings, df->n_warnings);
	free(df);
	return NULL;
}

static const char *const predefined_args[][2] = {
	{ "TARGETPLATFORM", "linux/amd64" }, { "TARGETOS", "linux" }, { "TARGETARCH", "amd64" },
	{ "BUILDPLATFORM", "linux/amd64" },  { "BUILDOS", "linux" },  { "BUILDARCH", "amd64" },
};

int dockerfile_parse(const char *text, size_t len, char *const *build_args, size_t n_build_args,
		     struct dockerfile **out, struct dockerfile_error *err)
{
	*err = (struct dockerfile_error){ 0 };
	struct parser p = {
		.err = err, .escape = '\\', .build_args = build_args, .n_build_args = n_build_args
	};
	p.df = calloc(1, sizeof(*p.df));
	p.steps = json_array();
	p.workdir = strdup("/");
	p.build_arg_used = calloc(n_build_args + 1, sizeof(bool));
	int r = p.df && p.steps && p.workdir && p.build_arg_used ? 0 : -ENOMEM;
	for (size_t i = 0; r >= 0 && i < ELEMENTSOF(predefined_args); i++)
		r = vars_set(&p.global_args, predefined_args[i][0], predefined_args[i][1], NULL,
			     true);
	if (r >= 0 && memchr(text, 0, len))
		r = fail(&p, "the Dockerfile contains a NUL byte");
	if (r >= 0)
		r = parse_lines(&p, text, len);
	if (r >= 0)
		r = finish(&p);
	if (r == -ENOMEM && !err->message[0])
		snprintf(err->message, sizeof(err->message), "out of memory");
	vars_clear(&p.global_args);
	vars_clear(&p.vars);
	free(p.stage_name);
	free(p.workdir);
	free(p.build_arg_used);
	json_decref(p.steps);
	json_decref(p.shell);
	json_decref(p.cmd.argv);
	free(p.cmd.text);
	free(p.cmd.raw);
	json_decref(p.entrypoint.argv);
	free(p.entrypoint.text);
	free(p.entrypoint.raw);
	free(p.ready);
	if (r < 0) {
		dockerfile_free(p.df);
		return r;
	}
	*out = p.df;
	return 0;
}
