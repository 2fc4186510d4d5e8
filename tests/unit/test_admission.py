"""Admission control: slots, the bounded queue, 429 before any stream starts, and draining."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from prometheus_client import REGISTRY

from app.chat.admission import Admission
from app.chat.errors import Overloaded, Unavailable
from tests.waiting import async_wait_until, wait_until


def test_slots_queue_and_reject() -> None:
    async def run() -> None:
        admission = Admission(max_inflight=2, max_queued=1, queue_timeout_s=5)
        a, b = await admission.acquire("t"), await admission.acquire("t")
        queued = asyncio.create_task(admission.acquire("t"))
        await async_wait_until(lambda: admission.queued == 1, what="the third request to queue")
        assert (admission.running, admission.queued) == (2, 1)
        with pytest.raises(Overloaded) as info:
            await admission.acquire("t")
        assert info.value.code == "server_overloaded" and info.value.retry_after_s == 1
        a.release()
        c = await asyncio.wait_for(queued, 1)  # the freed slot goes straight to the waiter
        assert (admission.running, admission.queued) == (2, 0)
        a.release()  # idempotent
        assert admission.running == 2
        b.release()
        c.release()
        assert admission.running == 0

    asyncio.run(run())


def test_queue_timeout_and_cancelled_waiter() -> None:
    async def run() -> None:
        admission = Admission(max_inflight=1, max_queued=2, queue_timeout_s=0.05)
        slot = await admission.acquire("t")
        with pytest.raises(Overloaded) as info:
            await admission.acquire("t")
        assert info.value.code == "queue_timeout"
        admission.queue_timeout_s = 5
        waiter = asyncio.create_task(admission.acquire("t"))
        await async_wait_until(lambda: admission.queued == 1, what="the waiter to queue")
        waiter.cancel()  # client went away while queued
        await asyncio.gather(waiter, return_exceptions=True)
        assert admission.queued == 0
        slot.release()
        assert admission.running == 0  # no slot leaked to the cancelled waiter

    asyncio.run(run())


def test_draining_refuses_new_work() -> None:
    async def run() -> None:
        admission = Admission(max_inflight=1, max_queued=1, queue_timeout_s=1)
        admission.draining = True
        with pytest.raises(Unavailable):
            await admission.acquire("t")

    asyncio.run(run())


def test_overload_is_429_before_any_stream_starts() -> None:
    """Over a fake engine that holds generations open: the third request is refused with a JSON 429."""
    import uvicorn

    from app.chat.prompt import PromptRenderer
    from app.config import Settings
    from app.core.manifest import Manifest
    from app.server import Components, build_app
    from loadtest.ports import free_port
    from tests.fakes import FakeEngine, FakeTokenizer

    engine = FakeEngine(["a", "b"], hold=True)
    components = Components(Manifest(name="fake", source="."), engine, PromptRenderer(FakeTokenizer(), None))
    app = build_app(Settings(max_inflight=1, max_queued=1, queue_timeout_s=10), components)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def rejected() -> float:
        return REGISTRY.get_sample_value("sweetie_rejected_requests_total", {"reason": "queue_full"}) or 0.0

    rejected_before = rejected()
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        wait_until(lambda: server.started, what="the server to start")
        with httpx.Client(base_url=url, timeout=10) as client, client.stream("POST", "/v1/chat/completions", json=body):
            second = threading.Thread(target=lambda: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10))
            second.start()
            wait_until(
                lambda: "sweetie_queued_requests 1.0" in httpx.get(f"{url}/metrics").text,
                what="the second request to queue",
            )
            third = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
            assert third.status_code == 429
            assert third.headers["content-type"] == "application/json"  # decided before any stream started
            assert third.headers["retry-after"] == "1"
            assert json.loads(third.text)["error"]["type"] == "rate_limit_error"
            assert rejected() == rejected_before + 1
            engine.release()
        second.join(10)
    finally:
        engine.release()
        server.should_exit = True
        thread.join(10)
