#!/bin/sh
# Runs every libFuzzer target in tests/fuzz/ for ${FUZZ_SECONDS:-30} seconds each, starting from
# a scratch copy of its committed corpus (the corpus itself is never written). Builds them in
# ${FUZZ_BUILD_DIR:-build-fuzz} with clang, ASan and UBSan (library code instrumented for
# coverage too). Fails when any target crashes, leaks, times out or trips a sanitizer; the
# reproducer is left in $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/.
#
#   FUZZ_SECONDS=10 scripts/fuzz.sh                 all targets
#   scripts/fuzz.sh paths json-body                 some targets
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=${FUZZ_SECONDS:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}

if [ $# -gt 0 ]; then
	targets="$*"
else
	targets=$(ls tests/fuzz/fuzz-*.c | sed -e 's|.*/fuzz-||' -e 's|\.c$||' | grep -vx main)
fi

# -Wno-error=format-nonliteral: clang, unlike gcc, wants a format attribute on va_list
# wrappers such as lib/http/http.c's mhd_log().
if [ ! -f "$build/build.ninja" ]; then
	CC=${CC:-clang} meson setup "$build" -Dfuzzing=true --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args="-fsanitize=fuzzer-no-link -Wno-error=format-nonliteral"
fi
if ! meson introspect "$build" --buildoptions | grep -q '"name": "fuzzing", "value": true'; then
	echo "fuzz.sh: $build is not configured with -Dfuzzing=true" >&2
	exit 1
fi
# Only the fuzz targets: a half-written program elsewhere must not stop them.
ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/fuzz-%s ' "$t"; done)

work=$(mktemp -d "${TMPDIR:-/tmp}/hutch-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=
npass=0
nfail=0
for t in $targets; do
	bin="$build/tests/fuzz/fuzz-$t"
	corpus="tests/fuzz/corpus/$t"
	artifacts="$build/fuzz-artifacts/$t"
	[ -x "$bin" ] || { echo "fuzz.sh: no target $bin" >&2; exit 1; }
	mkdir -p "$work/$t" "$artifacts"
	[ -d "$corpus" ] && cp -R "$corpus/." "$work/$t/"
	echo "== fuzz-$t: ${seconds}s, $(ls "$work/$t" | wc -l) seed inputs"
	if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$artifacts/" -print_final_stats=1 "$work/$t" \
		>"$work/$t.log" 2>&1; then
		grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$work/$t.log" || true
		echo "   fuzz-$t: ok"
		npass=$((npass + 1))
	else
		tail -n 60 "$work/$t.log"
		echo "   fuzz-$t: FAILED (reproducer in $artifacts/)" >&2
		failed="$failed $t"
		nfail=$((nfail + 1))
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz.sh: failing targets:$failed" >&2
	echo "fuzz: $npass passed, $nfail failed"
	exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a crash"
echo "fuzz: $npass passed, $nfail failed"
