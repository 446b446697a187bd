#!/usr/bin/env bash
# Benchmarks `hutch serve` (BUILD_DIR/hutch) through the official npm `e2b` SDK: Sandbox.create()
# p50/p99, create → first command, the bare-bubblewrap floor and memory per idle sandbox.
# Needs root and the base template (made by the first `hutch serve`).
# Usage: scripts/sandbox-bench.sh [BUILD_DIR] [-- extra args for bench/sandbox-bench.mjs,
#        e.g. --runs 200 --idle 500 --warm-sandboxes 0]
# HUTCH_BENCH=recovery-bench.mjs runs another daemon benchmark of bench/ the same way
# (scripts/recovery-bench.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
[[ ${1:-} == -- ]] && shift
case $build in /*) ;; *) build=$PWD/$build ;; esac
if [[ ! -x $build/hutch ]]; then
	echo "sandbox-bench: $build/hutch not found; build it first (ninja -C $build)" >&2
	exit 2
fi
if [[ $(id -u) != 0 ]]; then
	echo "sandbox-bench: hutch serve needs root" >&2
	exit 2
fi
if [[ ! -d $repo/tests/integration/node_modules/e2b ]]; then
	(cd "$repo/tests/integration" && npm ci --no-audit --no-fund --loglevel=error)
fi
unset E2B_SANDBOX_URL E2B_API_URL E2B_DOMAIN E2B_DEBUG
export HUTCH_BUILD=$build
# Same lock as the integration tests: the fixed subnet must not be shared.
exec 9>/tmp/hutch-integration.lock
flock 9
exec node "$repo/bench/${HUTCH_BENCH:-sandbox-bench.mjs}" "$@"
