#!/usr/bin/env bash
# Runs every test against one or more build directories and ends with "N passed, N failed".
#   scripts/run-tests.sh BUILD_DIR [BUILD_DIR...]
# Unit tests and fuzz-corpus replays count one per TAP point / target; integration and security
# tests (tests/security: hostile sandboxes, bad input, limits) count one per node:test case.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
passed=0 failed=0 skipped=0
failures=()

count_tap() { # name, file with TAP output, exit code
	local name=$1 out=$2 rc=$3 p f s
	p=$(grep -cE '^ok ' "$out" || true)
	f=$(grep -E '^not ok ' "$out" | grep -cvE '# (TODO|todo)' || true)
	s=$(grep -cE '^ok .*# (SKIP|skip)' "$out" || true)
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p - s)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		failures+=("$name")
		echo "---- $name failed (exit $rc):"
		grep -E -A15 '^not ok ' "$out" | head -n 80
		[ "$rc" -ne 0 ] && tail -n 20 "$out"
	fi
}

# One node:test run through scripts/integration.sh (it holds the machine-wide lock): tag,
# suite name, test files relative to tests/integration (default: all of its own).
run_node() {
	local tag=$1 suite=$2 out rc p f s
	shift 2
	out="$log/$tag-$suite.out"
	scripts/integration.sh "$b" "$@" >"$out" 2>&1
	rc=$?
	p=$(awk '/^# pass /{print $3}' "$out" | tail -n1)
	f=$(awk '/^# fail /{print $3}' "$out" | tail -n1)
	s=$(awk '/^# skip /{print $3}' "$out" | tail -n1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		failures+=("$tag/$suite")
		echo "---- $tag/$suite failed (exit $rc):"
		grep -E -B2 -A25 '^\s*not ok ' "$out" | head -n 200
		tail -n 30 "$out"
	fi
	grep -E '^# measured ' "$out" | sed 's/^# /   /'
	echo "   $tag: $suite $p passed, $f failed, $s skipped"
}

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

for b in "$@"; do
	tag=$(basename "$b")
	[ -d "$b" ] || { echo "run-tests: no build directory $b" >&2; exit 2; }
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

	echo "== $tag: unit tests"
	for t in "$b"/tests/unit/test-*; do
		[ -x "$t" ] && [ -f "$t" ] || continue
		n=$(basename "$t")
		timeout 120 "$t" >"$log/$tag-$n.out" 2>&1
		count_tap "$tag/$n" "$log/$tag-$n.out" $?
	done

	echo "== $tag: fuzz corpus replay"
	for t in "$b"/tests/fuzz/fuzz-*; do
		[ -x "$t" ] && [ -f "$t" ] || continue
		n=$(basename "$t")
		corpus="$root/tests/fuzz/corpus/$n"
		[ -d "$corpus" ] || corpus="$root/tests/fuzz/corpus/${n#fuzz-}"
		if timeout 300 "$t" "$corpus" >"$log/$tag-$n.out" 2>&1; then
			echo "ok 1 - $n" >>"$log/$tag-$n.out"
			count_tap "$tag/$n" "$log/$tag-$n.out" 0
		else
			rc=$?
			echo "not ok 1 - $n" >>"$log/$tag-$n.out"
			count_tap "$tag/$n" "$log/$tag-$n.out" "$rc"
		fi
	done

	echo "== $tag: integration tests (official e2b SDK against envd and hutch serve)"
	run_node "$tag" integration

	echo "== $tag: security tests (hostile sandboxes, bad input, limits)"
	security=()
	for f in tests/security/*.test.mjs; do security+=("../security/$(basename "$f")"); done
	run_node "$tag" security "${security[@]}"
done

if ((${#failures[@]})); then
	echo "Failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
