/* Template recipes: E2B's TemplateBuildStartV2 JSON as the SDK sends it, and clear errors. */
#include "common/util.h"
#include "template/recipe.h"
#include "tap.h"

#define HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Parses text; returns the error message ("" on success) in err. */
static int parse(const char *text, struct recipe *r, char *err, size_t errlen)
{
	json_t *j = json_loads(text, 0, NULL);
	err[0] = 0;
	int ret = recipe_parse(j, r, err, errlen);
	json_decref(j);
	return ret;
}

static void bad(const char *text, const char *want, const char *what)
{
	struct recipe r;
	char err[512];
	is_int(parse(text, &r, err, sizeof(err)), -EINVAL, "%s: refused", what);
	ok(strstr(err, want) != NULL, "%s: message '%s' mentions '%s'", what, err, want);
}

static void expands(const char *value, const char *want)
{
	json_t *env = json_pack("{s:s, s:s, s:s}", "HOME", "/root", "X", "a b", "EMPTY", "");
	char *out = NULL, err[300] = "";
	int r = recipe_env_expand(value, env, &out, err, sizeof(err));
	ok(r == 0 && out && streq(out, want), "ENV '%s' -> '%s' (got '%s' %s)", value, want,
	   out ? out : "(null)", err);
	free(out);
	json_decref(env);
}

static void test_env_expand(void)
{
	expands("plain", "plain");
	expands("", "");
	expands("$HOME/bin", "/root/bin");
	expands("${HOME}x", "/rootx");
	expands("/opt/bin:$PATH", "/opt/bin:" RECIPE_DEFAULT_PATH);
	expands("$UNSET.", ".");
	expands("${UNSET:-dflt}", "dflt");
	expands("${EMPTY:-dflt}", "dflt");
	expands("${X:-dflt}", "a b");
	expands("${X:+alt}", "alt");
	expands("${UNSET:+alt}", "");
	expands("\\$HOME", "$HOME");
	expands("\\\\$HOME", "\\/root");
	expands("\\\\", "\\");
	expands("cost: \\$5", "cost: $5");
	expands("$", "$");
	expands("a$1", "a$1");
	expands("100%", "100%");
	char *out = NULL, err[300] = "";
	json_t *env = json_object();
	is_int(recipe_env_expand("${HOME", env, &out, err, sizeof(err)), -EINVAL,
	       "unterminated ${ refused");
	ok(strstr(err, "bad substitution") != NULL, "with a message: %s", err);
	is_int(recipe_env_expand("${A:?x}", env, &out, err, sizeof(err)), -EINVAL,
	       "unsupported ${A:?x} refused");
	json_decref(env);
}

int main(void)
{
	test_env_expand();

	struct recipe r;
	char err[512];

	/* What Template().fromTemplate('base').runCmd(..).setEnvs(..).copy(..).setStartCmd(..)
	 * serializes to. */
	is_int(parse("{\"startCmd\":\"python3 -m http.server 8000\",\"readyCmd\":\"ss -ltn\","
		     "\"force\":false,\"fromTemplate\":\"base\",\"steps\":["
		     "{\"type\":\"RUN\",\"args\":[\"echo hi\"],\"force\":false},"
		     "{\"type\":\"RUN\",\"args\":[\"apt-get update\",\"root\"],\"force\":true},"
		     "{\"type\":\"ENV\",\"args\":[\"A\",\"1\",\"B\",\"two words\"]},"
		     "{\"type\":\"COPY\",\"args\":[\"src/*.txt\",\"/app/\",\"user\",\"0644\"],"
		     "\"filesHash\":\"" HASH "\",\"force\":false},"
		     "{\"type\":\"WORKDIR\",\"args\":[\"/"
		     "app\"]},{\"type\":\"USER\",\"args\":[\"user\"]}]}",
		     &r, err, sizeof(err)),
	       0, "the SDK's recipe parses (%s)", err);
	is_str(r.from_template, "base", "fromTemplate");
	ok(r.from_image == NULL, "no fromImage");
	is_str(r.start_cmd, "python3 -m http.server 8000", "startCmd");
	is_str(r.ready_cmd, "ss -ltn", "readyCmd");
	is_int(r.n_steps, 6, "six steps");
	ok(r.steps[0].type == STEP_RUN && r.steps[0].n_args == 1 && !r.steps[0].force, "RUN");
	ok(r.steps[1].force && streq(r.steps[1].args[1], "root"), "RUN as root, forced");
	ok(r.steps[2].type == STEP_ENV && r.steps[2].n_args == 4 &&
	       streq(r.steps[2].args[3], "two words"),
	   "ENV pairs");
	ok(r.steps[3].type == STEP_COPY && streq(r.steps[3].files_hash, HASH) &&
	       streq(r.steps[3].args[3], "0644"),
	   "COPY with hash and mode");
	ok(r.steps[4].type == STEP_WORKDIR && r.steps[5].type == STEP_USER, "WORKDIR, USER");
	recipe_done(&r);
	recipe_done(&r); /* twice is harmless */

	is_int(parse("{\"fromImage\":\"debian:bookworm\",\"steps\":[{\"type\":\"add\",\"args\":"
		     "[\"a.tar\",\"/x/\"],\"filesHash\":\"" HASH "\"},{\"type\":\"ARG\",\"args\":"
		     "[\"V\",\"\"]}]}",
		     &r, err, sizeof(err)),
	       0, "fromImage, lower-case ADD, ARG (%s)", err);
	ok(r.n_steps == 2 && r.steps[0].type == STEP_COPY && streq(r.steps[0].type_name, "ADD") &&
	       r.steps[1].type == STEP_ENV,
	   "ADD is a COPY named ADD, ARG an ENV");
	recipe_done(&r);
	is_int(parse("{\"fromTemplate\":\"base\"}", &r, err, sizeof(err)), 0, "no steps at all");
	is_int(r.n_steps, 0, "zero steps");
	recipe_done(&r);

	bad("[]", "JSON object", "not an object");
	bad("{\"steps\":[]}", "exactly one of fromImage and fromTemplate", "no base");
	bad("{\"fromImage\":\"a\",\"fromTemplate\":\"b\"}", "exactly one", "two bases");
	bad("{\"fromTemplate\":7}", "fromTemplate must be a string", "base of the wrong type");
	bad("{\"fromTemplate\":\"base\",\"steps\":{}}", "steps must be an array", "steps object");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"FROB\"}]}",
	    "step 1: unknown step type 'FROB'", "unknown type");
	bad("{\"fromTemplate\":\"base\",\"steps\":[7]}", "step 1: an object", "step not an object");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\"}]}",
	    "step 1 (RUN): 0 arguments", "RUN without a command");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\",\"args\":[\"\"]}]}",
	    "empty command", "empty RUN");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"RUN\",\"args\":[1]}]}",
	    "argument 1 is not a string", "argument of the wrong type");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"ENV\",\"args\":[\"A\"]}]}",
	    "arguments", "ENV without a value");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"ENV\",\"args\":[\"A=B\",\"1\"]}]}",
	    "bad variable name", "ENV name with '='");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a\",\"/b\"]}]}",
	    "filesHash", "COPY without a hash");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"/etc/passwd\","
	    "\"/b\"],\"filesHash\":\"" HASH "\"}]}",
	    "relative path", "COPY of an absolute path");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a/../../x\","
	    "\"/b\"],\"filesHash\":\"" HASH "\"}]}",
	    "relative path", "COPY out of the context");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"COPY\",\"args\":[\"a\",\"/b\",\"\","
	    "\"rwx\"],\"filesHash\":\"" HASH "\"}]}",
	    "not octal", "COPY with a bad mode");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"WORKDIR\",\"args\":[\"\"]}]}",
	    "empty argument", "empty WORKDIR");
	bad("{\"fromTemplate\":\"base\",\"steps\":[{\"type\":\"USER\",\"args\":[\"a\",\"b\"]}]}",
	    "2 arguments, expected 1 to 1", "USER with two arguments");
	return done();
}
