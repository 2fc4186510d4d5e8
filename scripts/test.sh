#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this):
#   bash scripts/test.sh                 # install what is missing, start Redis if needed, lint, type-check, pytest
#   bash scripts/test.sh -k chat -x      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh

# Session-memory tests need a real Redis; under CI=true they fail (not skip) without one.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1 && [ "${CI:-}" = "true" ]; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  if command -v redis-server >/dev/null 2>&1; then
    echo "==> starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
  fi
fi

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> import contracts (pyproject.toml [tool.importlinter])"
.venv/bin/lint-imports
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
