#!/usr/bin/env bash
# Every test: the type check, the linter, the trainer's (ruff, pytest), then jest (unit tests and the suites against a real
# Temporal dev server). FORGE_TEST_PYTEST=0 skips the trainer's pytest suite (about a minute) when iterating on jest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "[test] type check (tsc --noEmit)"
node_modules/.bin/tsc -p tsconfig.json --noEmit
echo "[test] lint (eslint: the rooms of docs/architecture.md §2, lines of at most 150 characters)"
node_modules/.bin/eslint --max-warnings 0 --cache --cache-location node_modules/.cache/eslint/ .
echo "[test] trainer: ruff, pytest"
.tools/venv/bin/ruff check --quiet trainer
.tools/venv/bin/ruff format --quiet --check trainer
if [ "${FORGE_TEST_PYTEST:-1}" != 0 ]; then
  # Two at a time, a file per worker (pytest-xdist): most of its time is Python processes starting and loading torch.
  .tools/venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile trainer/tests
fi
echo "[test] jest"
# Two cores here: run test files two at a time; each test file has its own task queue.
node_modules/.bin/jest --maxWorkers=2 "$@"
