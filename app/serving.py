"""Run uvicorn with a graceful drain.

On the first SIGTERM/SIGINT: ``/ready`` answers 503 at once and new ``/v1`` requests get 503, while in-flight
generations finish, for at most ``drain_grace_s`` seconds. Then uvicorn shuts down normally: the lifespan closes the
session store and the engine, and the process exits 0. A second signal stops without waiting out the grace (exit 130
after a second SIGINT, death by SIGTERM after a second SIGTERM, as uvicorn re-raises it). Signals to the whole
process group reach vLLM's engine processes too; they leave termination to this process
(:mod:`app.engine.engine_signals`).
"""

from __future__ import annotations

import time
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI

from app.chat.admission import Admission

log = structlog.get_logger("app.serving")


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain phase before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.fastapi_app = app
        self.grace_s = grace_s
        self.drain_started: float | None = None

    def _admission(self) -> Admission | None:
        return getattr(self.fastapi_app.state, "admission", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        admission = self._admission()
        if self.drain_started is not None or admission is None:
            super().handle_exit(sig, frame)  # second signal, or nothing to drain: stop now
            return
        self.drain_started = time.monotonic()
        admission.draining = True
        log.info("draining", in_flight=admission.busy, grace_s=self.grace_s)

    async def on_tick(self, counter: int) -> bool:
        admission = self._admission()
        if self.drain_started is not None and not self.should_exit and admission is not None:
            waited = time.monotonic() - self.drain_started
            if admission.busy == 0 or waited >= self.grace_s:
                log.info("drained", left_in_flight=admission.busy, waited_s=round(waited, 2))
                self.should_exit = True
        return await super().on_tick(counter)


def serve(app: FastAPI, host: str, port: int, grace_s: float) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)
    try:
        DrainingServer(config, app, grace_s).run()
    except KeyboardInterrupt:  # a second Ctrl-C: uvicorn re-raises it once shut down (its own run() swallows it)
        raise SystemExit(130) from None
