#!/usr/bin/env bash
# Runs the envd integration tests: the official npm `e2b` SDK (debug mode) against BUILD_DIR/envd.
# Usage: scripts/integration.sh [BUILD_DIR]   (default: build)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
if [[ ! -x $build/envd ]]; then
	echo "integration: $build/envd not found; build it first (ninja -C $build)" >&2
	exit 2
fi
if ! command -v node >/dev/null; then
	echo "integration: node is not installed" >&2
	exit 2
fi

cd "$repo/tests/integration"
if [[ ! -d node_modules/e2b ]]; then
	npm ci --no-audit --no-fund --loglevel=error
fi

# The SDK must talk to the local envd only.
unset E2B_SANDBOX_URL E2B_API_URL E2B_DOMAIN
export HUTCH_BUILD=$build E2B_DEBUG=true

# Test files run one at a time: debug mode always uses localhost:49983.
set +e
node --test --test-concurrency=1 --test-force-exit --test-reporter=tap ./*.test.mjs
rc=$?
set -e
exit $rc
