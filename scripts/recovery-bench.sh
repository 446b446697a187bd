#!/bin/sh
# Benchmarks a restart after a crash (bench/recovery-bench.mjs) with BUILD_DIR/hutch. Needs root.
# Usage: scripts/recovery-bench.sh [BUILD_DIR] [-- --sandboxes N --hung H --runs R]
HUTCH_BENCH=recovery-bench.mjs exec "$(dirname "$0")/sandbox-bench.sh" "$@"
