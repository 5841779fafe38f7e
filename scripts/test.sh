#!/usr/bin/env bash
# Every test: the type check, then jest (unit tests and the suites against a real Temporal dev server).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "[test] type check (tsc --noEmit)"
node_modules/.bin/tsc -p tsconfig.json --noEmit
echo "[test] jest"
# Two cores here: run test files two at a time; each test file has its own task queue.
node_modules/.bin/jest --maxWorkers=2 "$@"
