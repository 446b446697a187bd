#!/usr/bin/env bash
# Benchmarks a restart after a crash (bench/recovery-bench.mjs) with BUILD_DIR/hutch. Needs root.
# Usage: scripts/recovery-bench.sh [BUILD_DIR] [-- --sandboxes N --hung H --runs R]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
[[ ${1:-} == -- ]] && shift
case $build in /*) ;; *) build=$PWD/$build ;; esac
if [[ ! -x $build/hutch ]]; then
	echo "recovery-bench: $build/hutch not found; build it first (ninja -C $build)" >&2
	exit 2
fi
if [[ $(id -u) != 0 ]]; then
	echo "recovery-bench: hutch serve needs root" >&2
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
exec node "$repo/bench/recovery-bench.mjs" "$@"
