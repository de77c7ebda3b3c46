#!/usr/bin/env bash
# Installs real Kohya-SS sd-scripts for `npm run test:kohya` and for local CPU training, outside the
# clone and once (a rerun finds everything in place and takes a second):
#   $LORA_KOHYA_HOME/sd-scripts     sd-scripts at the Dockerfile's pin, unpacked from
#                                   ../shared/kohya/sd-scripts-<commit>.tar.gz (or LORA_SD_SCRIPTS_DIR,
#                                   a checkout of your own, used as it is)
#   $LORA_KOHYA_HOME/venv           torch/torchvision at the Dockerfile's versions + sd-scripts'
#                                   requirements (~6 GB; CUDA wheels, which run on CPU too)
#   $LORA_KOHYA_HOME/tokenizer      the CLIP tokenizer sd-scripts loads, built offline from
#                                   open_clip's BPE merges (no model hub is reachable here)
#   $LORA_KOHYA_HOME/sd15-random.safetensors
#                                   a randomly initialised SD 1.5 checkpoint made by sd-scripts'
#                                   own library/model_util.py (2.1 GB, ~1 min, ~9 GB peak memory)
# and prints the paths as JSON in $LORA_KOHYA_HOME/kohya.json. No weights are downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Dockerfile's pins (docker/kohya/Dockerfile), in one place for the CPU install.
SD_SCRIPTS_COMMIT=fb4eb3b9
TORCH_VERSION=2.4.0
TORCHVISION_VERSION=0.19.0
OPEN_CLIP=open-clip-torch==3.3.0

home=${LORA_KOHYA_HOME:-$HOME/.cache/lora-pipeline/kohya-$SD_SCRIPTS_COMMIT}
say() { printf '[setup-kohya] %s\n' "$*"; }
mkdir -p "$home"

# --- sd-scripts -------------------------------------------------------------------------------
if [ -n "${LORA_SD_SCRIPTS_DIR:-}" ]; then
  sd_scripts=$(cd "$LORA_SD_SCRIPTS_DIR" && pwd)
  [ -f "$sd_scripts/train_network.py" ] || { echo "[setup-kohya] error: LORA_SD_SCRIPTS_DIR=$sd_scripts holds no train_network.py" >&2; exit 1; }
  say "using sd-scripts at $sd_scripts (LORA_SD_SCRIPTS_DIR)"
else
  sd_scripts=$home/sd-scripts
  tarball=../shared/kohya/sd-scripts-$SD_SCRIPTS_COMMIT.tar.gz
  if [ ! -f "$sd_scripts/train_network.py" ]; then
    [ -f "$tarball" ] || { echo "[setup-kohya] error: $tarball not found; set LORA_SD_SCRIPTS_DIR to an sd-scripts checkout" >&2; exit 1; }
    say "unpacking $tarball into $home"
    rm -rf "$sd_scripts.partial" && mkdir -p "$sd_scripts.partial"
    tar -xzf "$tarball" -C "$sd_scripts.partial" --strip-components=1
    mv "$sd_scripts.partial" "$sd_scripts"
  fi
fi

# --- the venv ---------------------------------------------------------------------------------
venv=$home/venv
stamp=$venv/.lora-kohya-stamp
want=$(printf '%s ' "$TORCH_VERSION" "$TORCHVISION_VERSION" "$OPEN_CLIP" "$(sha256sum "$sd_scripts/requirements.txt" | cut -c1-16)")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  python=$(command -v python3)
  [ -x "$venv/bin/pip" ] || { say "creating $venv"; "$python" -m venv "$venv"; }
  pip=("$venv/bin/pip" install --disable-pip-version-check --quiet --progress-bar off)
  say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (several GB; cached by pip for reruns)"
  "${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  say "installing sd-scripts' requirements"
  # requirements.txt ends in "-e ." (sd-scripts' own library package): run from its folder.
  (cd "$sd_scripts" && "${pip[@]}" -r requirements.txt)
  # The BPE merges the offline tokenizer is built from; open_clip's code is not used (no deps).
  "${pip[@]}" --no-deps "$OPEN_CLIP"
  "$venv/bin/accelerate" config default --mixed_precision no >/dev/null
  echo "$want" > "$stamp"
else
  say "venv up to date at $venv"
fi

# --- the tokenizer and the checkpoint ------------------------------------------------------------
tokenizer=$home/tokenizer
if [ ! -f "$tokenizer/openai_clip-vit-large-patch14/vocab.json" ]; then
  say "building the CLIP tokenizer offline into $tokenizer"
  "$venv/bin/python" docker/kohya/make_tokenizer.py "$tokenizer"
fi
checkpoint=$home/sd15-random.safetensors
if [ ! -f "$checkpoint" ]; then
  say "making a random SD 1.5 checkpoint with sd-scripts' model_util (about a minute, ~9 GB of memory)"
  # The name must end in .safetensors: model_util picks the format by extension.
  partial=$home/sd15-random.partial.safetensors
  (cd "$sd_scripts" && "$venv/bin/python" "$OLDPWD/scripts/kohya/make-random-sd15.py" "$partial")
  mv "$partial" "$checkpoint"
fi

cat > "$home/kohya.json" <<JSON
{
  "sdScripts": "$sd_scripts",
  "python": "$venv/bin/python",
  "accelerate": "$venv/bin/accelerate",
  "tokenizer": "$tokenizer",
  "checkpoint": "$checkpoint"
}
JSON
say "ready: $home/kohya.json"
