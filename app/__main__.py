"""Run the SweetieChat server.

    python -m app                                  # embedded default: sweetiechat on CPU, 127.0.0.1:8000
    python -m app --model my-finetune --host 0.0.0.0 --port 8080
    SWEETIE_MODEL_REPO=/models python -m app --model sweetiechat-8b --device cuda

Every flag has a ``SWEETIE_*`` environment variable (see app/config.py); flags win.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

EPILOG = """\
API keys and tenant limits:
  SWEETIE_API_KEYS_FILE   one key per line: key [tenant] [rpm=N] [tpm=N] [max_streams=N] [max_queued=N]
                          [max_sessions=N]; '#' comments. Limits belong to the tenant (a tenant's lines must agree).
                          kill -HUP <pid> reloads it: removed keys get 401 at once, in-flight requests finish; a
                          malformed file keeps the old keys (logged with file, line and field, never a key).
  SWEETIE_API_KEYS        the same entries, comma-separated, 'key:tenant rpm=N ...'
  Defaults, for every limit a tenant's key lines do not set:
  SWEETIE_TENANT_RPM, SWEETIE_TENANT_TPM           requests / prompt+completion tokens per minute (unset: none);
                                                   counted in Redis across replicas when SWEETIE_REDIS_URL is set
  SWEETIE_TENANT_MAX_STREAMS, _MAX_QUEUED          generations running / waiting per replica (default: the whole
                                                   pool with one tenant, else half of SWEETIE_MAX_INFLIGHT/_QUEUED)
  SWEETIE_TENANT_MAX_SESSIONS                      live stored sessions (unset: none)
  SWEETIE_FAIR_ADMISSION=false                     one first-come queue, no per-tenant caps (rpm/tpm still apply)
Over a limit: 429 rate_limit_exceeded with Retry-After and x-ratelimit-* headers (OpenAI's).
"""


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="SweetieChat OpenAI-compatible server",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="manifest name under the model repo, or a folder with model.yaml")
    parser.add_argument("--model-repo", help="folder of model manifests (default: ./model_repo)")
    parser.add_argument("--cache-dir", help="cache for materialised models (default: ~/.cache/sweetiechat)")
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8000)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="engine device (default auto)")
    parser.add_argument("--max-model-len", type=int, help="override the manifest's context length")
    parser.add_argument("--kv-cache-gb", type=float, help="CPU KV cache size in GiB (default 2)")
    parser.add_argument("--seed", type=int, help="engine seed (default 0)")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], help="log format (default auto)")
    parser.add_argument("--log-level", help="log level (default info)")
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    overrides = parse_args(argv)
    from pydantic import ValidationError

    from app.config import Settings
    from app.materialize import ModelSourceError
    from app.observability import configure_logging
    from app.server import ConfigError, build_app, check_config, load_components
    from app.serving import serve

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            name = "SWEETIE_" + "_".join(str(p) for p in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a key reload during the model load must not kill the process
    try:
        config = check_config(settings)  # every file and setting, before the model load (seconds to minutes)
        components = load_components(config)
    except (ConfigError, ModelSourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = build_app(settings, components, config)
    serve(app, settings.host, settings.port, settings.drain_grace_s)


if __name__ == "__main__":
    main()
