#!/usr/bin/env bash
# Install what is missing, then start the server on the embedded default model (CPU, no Redis needed):
#   bash scripts/serve.sh                        # http://127.0.0.1:8000/v1, model "sweetiechat"
#   bash scripts/serve.sh --port 8080 --model my-finetune
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m app "$@"
