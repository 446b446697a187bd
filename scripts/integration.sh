#!/usr/bin/env bash
# Runs the envd integration tests: the official npm `e2b` SDK (debug mode) against BUILD_DIR/envd.
# Usage: scripts/integration.sh [BUILD_DIR [TEST_FILE...]]   (default: build, every *.test.mjs)
# Runs hold /tmp/hutch-integration.lock: debug-mode envd tests use localhost:49983 and the daemon
# tests a fixed subnet, so two checkouts on one machine must not run them at the same time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build}
shift || true
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
if [[ $# -gt 0 ]]; then files=("$@"); else files=(./*.test.mjs); fi
exec 9>/tmp/hutch-integration.lock
flock 9
node --test --test-concurrency=1 --test-force-exit --test-reporter=tap "${files[@]}"
rc=$?
set -e
exit $rc
