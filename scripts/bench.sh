#!/usr/bin/env bash
# Benchmarks BUILD_DIR/envd through the official npm `e2b` SDK (debug mode, port 49983).
# Usage: scripts/bench.sh [BUILD_DIR] [-- extra args for bench/envd-bench.mjs, e.g. --runs 500 --mib 64]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
[[ ${1:-} == -- ]] && shift
case $build in /*) ;; *) build=$PWD/$build ;; esac
if [[ ! -x $build/envd ]]; then
	echo "bench: $build/envd not found; build it first (ninja -C $build)" >&2
	exit 2
fi
if [[ ! -d $repo/tests/integration/node_modules/e2b ]]; then
	(cd "$repo/tests/integration" && npm ci --no-audit --no-fund --loglevel=error)
fi
unset E2B_SANDBOX_URL E2B_API_URL E2B_DOMAIN
export HUTCH_BUILD=$build E2B_DEBUG=true
# Same lock as the integration tests: the fixed port and subnet must not be shared.
exec 9>/tmp/hutch-integration.lock
flock 9
exec node "$repo/bench/envd-bench.mjs" "$@"
