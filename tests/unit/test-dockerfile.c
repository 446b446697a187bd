/* The Dockerfile parser: instruction by instruction, the recipe it produces and its errors. */
#include "common/strbuf.h"
#include "json/jsonx.h"
#include "template/dockerfile.h"
#include "tap.h"

/* The steps as `TYPE["arg",...]` separated by spaces, without the USER root / WORKDIR / prologue
 * and the USER user / WORKDIR /home/user epilogue when present. */
static char *steps_text(const struct dockerfile *df)
{
	struct strbuf sb = { 0 };
	json_t *steps = json_object_get(df->recipe, "steps");
	size_t n = json_array_size(steps), first = 0, last = n;
	char *s0 = n >= 2 ? json_dumps(json_array_get(steps, 0), JSON_COMPACT) : NULL;
	char *s1 = n >= 2 ? json_dumps(json_array_get(steps, 1), JSON_COMPACT) : NULL;
	if (s0 && s1 && strstr(s0, "\"USER\"") && strstr(s0, "[\"root\"]") &&
	    strstr(s1, "\"WORKDIR\"") && strstr(s1, "[\"/\"]"))
		first = 2;
	free(s0);
	free(s1);
	for (size_t i = first; i < last; i++) {
		json_t *st = json_array_get(steps, i);
		char *args = json_dumps(json_object_get(st, "args"), JSON_COMPACT);
		strbuf_printf(&sb, "%s%s%s", sb.len ? " " : "",
			      json_string_value(json_object_get(st, "type")), args);
		free(args);
	}
	return sb.data ? strbuf_steal(&sb) : strdup("");
}

static struct dockerfile *parse(const char *text, char *const *args, size_t nargs)
{
	struct dockerfile *df = NULL;
	struct dockerfile_error err;
	int r = dockerfile_parse(text, strlen(text), args, nargs, &df, &err);
	if (r < 0)
		diag("parse failed: line %u: %s", err.line, err.message);
	return df;
}

static void check_steps(const char *text, const char *want, const char *what)
{
	struct dockerfile *df = parse(text, NULL, 0);
	_cleanup_free_ char *got = df ? steps_text(df) : NULL;
	is_str(got, want, "%s", what);
	dockerfile_free(df);
}

static void check_error(const char *text, unsigned line, const char *needle, const char *what)
{
	struct dockerfile *df = NULL;
	struct dockerfile_error err;
	int r = dockerfile_parse(text, strlen(text), NULL, 0, &df, &err);
	is_int(r, -EINVAL, "%s: rejected", what);
	is_int(err.line, line, "%s: line", what);
	ok(strstr(err.message, needle) != NULL, "%s: message '%s' has '%s'", what, err.message,
	   needle);
	dockerfile_free(df);
}

static const char *str_field(const struct dockerfile *df, const char *key)
{
	return df ? json_string_value(json_object_get(df->recipe, key)) : NULL;
}

static void test_basics(void)
{
	struct dockerfile *df = parse("FROM base\nRUN echo hi\n", NULL, 0);
	is_str(str_field(df, "fromImage"), "base", "FROM → fromImage");
	is_str(df ? df->from : NULL, "base", "from reference");
	ok(df && json_is_false(json_object_get(df->recipe, "force")), "force false");
	_cleanup_free_ char *t = df ? steps_text(df) : NULL;
	is_str(t, "RUN[\"echo hi\"] USER[\"user\"] WORKDIR[\"/home/user\"]",
	       "E2B's prologue and default user/workdir epilogue, as the SDK's fromDockerfile");
	ok(df && !json_object_get(df->recipe, "startCmd"), "no start command without CMD");
	dockerfile_free(df);

	check_steps(
	    "from base\nrun   echo a   \n\n# comment\n  RUN echo b\nUSER root\nWORKDIR /x\n",
	    "RUN[\"echo a\"] RUN[\"echo b\"] USER[\"root\"] WORKDIR[\"/x\"]",
	    "keywords case-insensitive, comments, blank lines, indentation");
	check_steps("FROM base\nRUN apt-get update && \\\n    apt-get install -y jq \\\n"
		    "# a comment inside\n\n    curl\nUSER u\nWORKDIR /\n",
		    "RUN[\"apt-get update &&     apt-get install -y jq     curl\"] USER[\"u\"] "
		    "WORKDIR[\"/\"]",
		    "line continuations skip comments and blank lines");
	check_steps("# escape=`\nFROM base\nRUN echo a `\n  b\nCOPY a\\b /x/\nUSER u\nWORKDIR /\n",
		    "RUN[\"echo a   b\"] COPY[\"a\\\\b\",\"/x/\",\"\",\"\"] USER[\"u\"] "
		    "WORKDIR[\"/\"]",
		    "escape directive: backtick continues lines, backslash is literal");
	check_steps("# syntax=docker/dockerfile:1\n#escape = \\\nFROM base\nRUN true\nUSER u\n"
		    "WORKDIR /\n",
		    "RUN[\"true\"] USER[\"u\"] WORKDIR[\"/\"]", "syntax directive ignored");
	check_steps("FROM base\r\nRUN echo crlf\r\nUSER u\r\nWORKDIR /\r\n",
		    "RUN[\"echo crlf\"] USER[\"u\"] WORKDIR[\"/\"]", "CRLF line ends");
}

static void test_run(void)
{
	check_steps("FROM base\nRUN [\"echo\", \"two words\", \"it's\"]\nUSER u\nWORKDIR /\n",
		    "RUN[\"echo 'two words' 'it'\\\\''s'\"] USER[\"u\"] WORKDIR[\"/\"]",
		    "exec form → shell-quoted command");
	check_steps("FROM base\nRUN [not json\nUSER u\nWORKDIR /\n",
		    "RUN[\"[not json\"] USER[\"u\"] WORKDIR[\"/\"]", "bad JSON is the shell form");
	check_steps("FROM base\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n"
		    "RUN echo $BASH_VERSION | cat\nUSER u\nWORKDIR /\n",
		    "RUN[\"/bin/bash -o pipefail -c 'echo $BASH_VERSION | cat'\"] USER[\"u\"] "
		    "WORKDIR[\"/\"]",
		    "SHELL wraps later shell-form RUN");
	check_steps("FROM base\nRUN --network=none echo x\nUSER u\nWORKDIR /\n",
		    "RUN[\"echo x\"] USER[\"u\"] WORKDIR[\"/\"]", "RUN --network ignored");
	check_error("FROM base\nRUN --mount=type=cache,target=/x make\n", 2, "RUN --mount",
		    "RUN --mount");
	check_error("FROM base\nRUN\n", 2, "RUN needs a command", "empty RUN");
}

static void test_copy(void)
{
	struct dockerfile *df = parse("FROM base\nWORKDIR /app\nCOPY --chown=user:user --chmod=755 "
				      "a.txt ./dir/ b/ /abs/\nADD data.tar.gz .\nCOPY [\"x y\", "
				      "\"/opt/x y\"]\n",
				      NULL, 0);
	_cleanup_free_ char *t = df ? steps_text(df) : NULL;
	is_str(
	    t,
	    "WORKDIR[\"/app\"] COPY[\"a.txt\",\"/abs/\",\"user:user\",\"0755\"] "
	    "COPY[\"dir\",\"/abs/\",\"user:user\",\"0755\"] "
	    "COPY[\"b\",\"/abs/\",\"user:user\",\"0755\"] ADD[\"data.tar.gz\",\"/app/\",\"\",\"\"] "
	    "COPY[\"x y\",\"/opt/x y\",\"\",\"\"] USER[\"user\"]",
	    "COPY: one step per source, flags, relative dest against WORKDIR, JSON form");
	is_int(df ? df->n_copies : 0, 5, "five sources to upload");
	if (df && df->n_copies == 5) {
		is_int(df->copies[0].step, 3,
		       "first copy is step 3 (after USER, WORKDIR, WORKDIR)");
		is_str(df->copies[1].src, "dir", "source normalised");
		ok(df->copies[3].add && !df->copies[0].add, "ADD marked");
		is_int(df->copies[3].line, 4, "ADD line");
		is_str(df->copies[3].dest, "/app/", "ADD . → the WORKDIR as a directory");
	}
	dockerfile_free(df);

	check_steps("FROM base\nCOPY /etc/../x/./y.txt .\nUSER u\nWORKDIR /\n",
		    "COPY[\"x/y.txt\",\"/\",\"\",\"\"] USER[\"u\"] WORKDIR[\"/\"]",
		    "a leading / is the context root");
	check_steps(
	    "FROM base\nWORKDIR rel\nWORKDIR ../other/./d\nCOPY *.txt f\nUSER u\n",
	    "WORKDIR[\"/rel\"] WORKDIR[\"/other/d\"] COPY[\"*.txt\",\"/other/d/f\",\"\",\"\"] "
	    "USER[\"u\"]",
	    "relative WORKDIRs, globs kept, file destination");
	check_error("FROM base\nCOPY ../secret /x\n", 2, "outside the build context", "escape");
	check_error("FROM base\nCOPY a b /notdir\n", 2, "ending in /", "several sources");
	check_error("FROM base\n\nCOPY --from=builder /a /b\n", 3, "--from", "COPY --from");
	check_error("FROM base\nADD https://example.com/x.tgz /x/\n", 2, "URL", "ADD URL");
	check_error("FROM base\nCOPY --chmod=u+x a /b\n", 2, "octal", "symbolic chmod");
	check_error("FROM base\nCOPY onlyone\n", 2, "source and a destination", "one arg");
}

static void test_env_arg(void)
{
	check_steps("FROM base\nENV A=1 B=\"two words\" C='$lit' D=x\\ y\nENV E $A-${B}\n"
		    "ENV PATH=/opt/bin:$PATH F=${NOPE:-dflt}\nUSER u\nWORKDIR /\n",
		    "ENV[\"A\",\"1\",\"B\",\"two words\",\"C\",\"\\\\$lit\",\"D\",\"x y\"] "
		    "ENV[\"E\",\"1-two words\"] "
		    "ENV[\"PATH\",\"/opt/bin:$PATH\",\"F\",\"${NOPE:-dflt}\"] USER[\"u\"] "
		    "WORKDIR[\"/\"]",
		    "ENV: both forms, quotes, escapes; undefined variables left for the builder");
	check_steps(
	    "FROM base\nENV A=old\nENV A=new B=$A\nUSER u\nWORKDIR /\n",
	    "ENV[\"A\",\"old\"] ENV[\"A\",\"new\",\"B\",\"old\"] USER[\"u\"] WORKDIR[\"/\"]",
	    "one ENV sees the values from before it");

	char *args[] = { "VERSION=2.0", "UNUSED=1" };
	struct dockerfile *df =
	    parse("ARG BASE=base\nARG TAG\nFROM ${BASE}${TAG:+:$TAG}\nARG VERSION=1.0\n"
		  "ARG EMPTY\nRUN echo $VERSION\nWORKDIR /opt/v${VERSION}\n"
		  "COPY app-${VERSION:-x}.tgz ${EMPTY:-/srv}/\nUSER ${NOBODY:-nobody}\n",
		  args, 2);
	_cleanup_free_ char *t = df ? steps_text(df) : NULL;
	is_str(df ? df->from : NULL, "base", "global ARG in FROM, ${X:+...} of an unset one");
	is_str(t,
	       "RUN[\"export VERSION=2.0; echo $VERSION\"] WORKDIR[\"/opt/v2.0\"] "
	       "COPY[\"app-2.0.tgz\",\"/srv/\",\"\",\"\"] USER[\"nobody\"]",
	       "ARG: build arg overrides the default, RUN gets it exported, substitution");
	bool warned = false;
	for (size_t i = 0; df && i < df->n_warnings; i++)
		warned |= strstr(df->warnings[i], "UNUSED") != NULL;
	ok(warned, "an undeclared build arg is reported");
	dockerfile_free(df);

	check_steps("ARG V=3\nFROM base\nRUN echo $V\nARG V\nRUN echo $V\nENV V=env\nARG V=arg\n"
		    "RUN echo $V\nUSER u\nWORKDIR /\n",
		    "RUN[\"echo $V\"] RUN[\"export V=3; echo $V\"] ENV[\"V\",\"env\"] "
		    "RUN[\"echo $V\"] USER[\"u\"] WORKDIR[\"/\"]",
		    "global ARGs need a redeclaration; ENV wins over ARG");
	check_steps("FROM base\nARG TARGETARCH\nWORKDIR /opt/$TARGETARCH\nUSER u\n",
		    "WORKDIR[\"/opt/amd64\"] USER[\"u\"]", "predefined platform ARGs");
	check_error("FROM base\nARG X\nWORKDIR ${X:?X must be set}\n", 3, "X must be set",
		    "${X:?msg}");
	check_error("FROM base\nENV A=\"open\n", 2, "unterminated double quote", "quote");
	check_error("FROM base\nWORKDIR ${A\n", 2, "missing '}'", "brace");
	check_error("FROM base\nWORKDIR ${A/x/y}\n", 2, "unsupported modifier", "modifier");
	check_error("FROM base\nENV novalue\n", 2, "needs a value", "ENV without value");
	check_error("FROM base\nENV =x\n", 2, "not NAME=VALUE", "ENV empty name");
}

static void test_start(void)
{
	struct dockerfile *df =
	    parse("FROM base\nCMD [\"python3\", \"-m\", \"http.server\", \"8000\"]\n", NULL, 0);
	is_str(str_field(df, "startCmd"), "python3 -m http.server 8000", "CMD exec form");
	ok(df && !json_object_get(df->recipe, "readyCmd"), "no ready command by default");
	dockerfile_free(df);
	df = parse("FROM base\nENTRYPOINT [\"/bin/app\", \"--flag\"]\nCMD [\"a b\"]\n", NULL, 0);
	is_str(str_field(df, "startCmd"), "/bin/app --flag 'a b'", "ENTRYPOINT exec + CMD args");
	dockerfile_free(df);
	df = parse("FROM base\nENTRYPOINT [\"/bin/app\"]\nCMD run it\n", NULL, 0);
	is_str(str_field(df, "startCmd"), "/bin/app /bin/sh -c 'run it'",
	       "ENTRYPOINT exec + CMD shell form");
	dockerfile_free(df);
	df = parse("FROM base\nCMD ignored\nENTRYPOINT node server.js\n"
		   "HEALTHCHECK --interval=5s CMD curl -sf localhost:3000\n",
		   NULL, 0);
	is_str(str_field(df, "startCmd"), "node server.js", "ENTRYPOINT shell form wins");
	is_str(str_field(df, "readyCmd"), "curl -sf localhost:3000", "HEALTHCHECK → ready");
	dockerfile_free(df);
	check_error("FROM base\nHEALTHCHECK --retries=3\n", 2, "HEALTHCHECK", "bad HEALTHCHECK");
}

static void test_stages_and_misc(void)
{
	check_steps("FROM base AS one\nRUN a\nARG X=1\nRUN c\nFROM one AS two\nRUN b $X\nUSER u\n"
		    "WORKDIR /\n",
		    "RUN[\"a\"] RUN[\"export X=1; c\"] RUN[\"b $X\"] USER[\"u\"] WORKDIR[\"/\"]",
		    "a FROM that continues the previous stage");
	check_error("FROM base AS build\nRUN make\nFROM debian:bookworm\nRUN x\n", 3, "multi-stage",
		    "multi-stage");
	check_error("RUN echo\n", 1, "before FROM", "RUN before FROM");
	check_error("# only a comment\n", 0, "no FROM", "no FROM");
	check_error("FROM base\nFOO bar\n", 2, "unknown instruction 'FOO'", "unknown");
	check_error("FROM base\nRUN cat <<EOF > /x\nhello\nEOF\n", 3, "heredocs", "heredoc hint");
	check_error("FROM a b\n", 1, "IMAGE [AS NAME]", "bad FROM");
	check_error("FROM base\nUSER\n", 2, "USER takes", "empty USER");

	struct dockerfile *df =
	    parse("FROM --platform=linux/arm64 base\nEXPOSE 80\nLABEL a=b\nVOLUME /data\n"
		  "STOPSIGNAL TERM\nONBUILD RUN x\nMAINTAINER me\nUSER app:grp\nWORKDIR /\n",
		  NULL, 0);
	ok(df != NULL, "ignored instructions parse");
	is_int(df ? df->n_warnings : 0, 8, "each ignored instruction warns");
	if (df && df->n_warnings)
		ok(startswith(df->warnings[0], "line 1: FROM --platform"),
		   "warnings carry lines: %s", df->warnings[0]);
	_cleanup_free_ char *t = df ? steps_text(df) : NULL;
	is_str(t, "USER[\"app\"] WORKDIR[\"/\"]", "USER group dropped");
	dockerfile_free(df);

	const char nul[] = "FROM base\nRUN a\0b\n";
	struct dockerfile_error err;
	is_int(dockerfile_parse(nul, sizeof(nul) - 1, NULL, 0, &df, &err), -EINVAL, "NUL byte");

	/* ENV A=$A$A doubles each time: bounded, not a memory bomb. */
	struct strbuf bomb = { 0 };
	strbuf_appends(&bomb, "FROM base\nENV A=xxxxxxxxxxxxxxxx\n");
	for (int i = 0; i < 40; i++)
		strbuf_appends(&bomb, "ENV A=$A$A\n");
	is_int(dockerfile_parse(bomb.data, bomb.len, NULL, 0, &df, &err), -EINVAL,
	       "substitution growth is bounded: %s", err.message);
	strbuf_free(&bomb);

	_cleanup_free_ char *q1 = dockerfile_shell_quote("plain-word_1.2/x");
	_cleanup_free_ char *q2 = dockerfile_shell_quote("");
	_cleanup_free_ char *q3 = dockerfile_shell_quote("a'b $c");
	is_str(q1, "plain-word_1.2/x", "quote: safe word unchanged");
	is_str(q2, "''", "quote: empty");
	is_str(q3, "'a'\\''b $c'", "quote: single quote and dollar");
}

int main(void)
{
	test_basics();
	test_run();
	test_copy();
	test_env_arg();
	test_start();
	test_stages_and_misc();
	return done();
}
