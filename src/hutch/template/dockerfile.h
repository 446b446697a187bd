/*
 * Dockerfile → template recipe. A pure parser (no I/O): the text of a Dockerfile in, the JSON the
 * E2B SDK sends to POST /v2/templates/{id}/builds/{buildID} (TemplateBuildStartV2) out, plus the
 * COPY/ADD sources the client must hash and upload. Like the SDK's fromDockerfile(), it runs on
 * the client (`hutch template build`).
 *
 * Output (matches the SDK's own parseDockerfile + serialize, so the server sees one format):
 *   {"fromImage": REF, "force": false, "startCmd"?: S, "readyCmd"?: S,
 *    "steps": [{"type": T, "args": [...], "force": false}, ...]}
 *   USER root and WORKDIR / come first; USER user and WORKDIR /home/user are appended when the
 *   Dockerfile sets no USER / WORKDIR (E2B's defaults). Step args: RUN [cmd], COPY/ADD [src, dest,
 *   user, mode] (dest made absolute against WORKDIR, mode "0755" or ""), ENV [k1, v1, k2, v2...],
 *   WORKDIR [absolute dir], USER [name]. The client adds "filesHash" to COPY/ADD steps, and turns
 *   an ADD whose source is not a local tar archive into a COPY (only the client can look).
 *
 * Semantics (Docker's, where E2B's recipe can express them):
 *   - Parser directives `# escape=` (\ or `) and `# syntax=` (ignored); `#` comments; line
 *     continuations; JSON (exec) and shell forms; no heredocs.
 *   - ARG: defaults, overrides from build args, global ARGs before FROM usable in FROM (and in the
 *     stage after a bare `ARG NAME`). ARGs are not persisted: RUN steps get the ARGs in scope as
 *     an `export K='v'; ` prefix, as Docker gives them to RUN as environment variables.
 *   - $VAR, ${VAR}, ${VAR:-w}, ${VAR-w}, ${VAR:+w}, ${VAR+w}, ${VAR:?msg}, ${VAR?msg} are
 *     substituted in FROM, COPY, ADD, ENV, ARG, WORKDIR, USER, LABEL/EXPOSE/... (not in RUN, CMD,
 *     ENTRYPOINT, which the shell expands). Variables come from ARG and ENV in the Dockerfile. In
 *     ENV values a variable the Dockerfile does not define (e.g. PATH of the base image) is left
 *     as written for the builder to expand against the build environment, like E2B does; a
 *     literal dollar in an ENV value is sent as `\$`. Elsewhere an undefined variable is empty
 *     (with a warning).
 *   - CMD / ENTRYPOINT → startCmd (exec form shell-quoted; ENTRYPOINT exec + CMD exec are joined
 *     as Docker does). HEALTHCHECK CMD → readyCmd. SHELL [...] wraps later shell-form RUN/CMD.
 *   - Multi-stage: a FROM naming the previous stage (`FROM a AS s1` ... `FROM s1`) continues it;
 *     any other second FROM, and COPY --from, are errors. RUN --mount/--security: errors.
 *     ADD of a URL or git repository: error. EXPOSE, LABEL, MAINTAINER, VOLUME, STOPSIGNAL,
 *     ONBUILD, HEALTHCHECK NONE, RUN --network: ignored with a warning.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct dockerfile_copy {
	size_t step; /* index of the COPY/ADD step in the "steps" array */
	char *src;   /* relative to the build context, normalised, may be a glob */
	char *dest;  /* absolute */
	bool add;    /* ADD: a local tar archive source is extracted by the builder */
	unsigned line;
};

struct dockerfile {
	json_t *recipe; /* TemplateBuildStartV2 without filesHash (owned) */
	char *from;	/* the FROM reference, substituted (also recipe.fromImage) */
	struct dockerfile_copy *copies;
	size_t n_copies;
	char **warnings; /* "line N: ..." */
	size_t n_warnings;
};

struct dockerfile_error {
	unsigned line; /* 0: not tied to a line */
	char message[512];
};

/*
 * Parses len bytes of text (NUL bytes are an error). build_args are "KEY=VALUE" strings (the
 * caller resolves a bare `--build-arg KEY` from its environment); a build arg that no ARG
 * declares gives a warning. On success *out owns everything (free with dockerfile_free).
 * Returns 0, -EINVAL with err filled for a bad Dockerfile, -ENOMEM.
 */
int dockerfile_parse(const char *text, size_t len, char *const *build_args, size_t n_build_args,
		     struct dockerfile **out, struct dockerfile_error *err);
struct dockerfile *dockerfile_free(struct dockerfile *df);

/* Quotes s for a POSIX shell when it needs it (malloc'd; NULL on ENOMEM). */
char *dockerfile_shell_quote(const char *s);
