"""The smg gateway in front of two real replicas (tiny model, vLLM on CPU) that share a real Redis (issue 16).

Two ``python -m app`` replicas with API keys, once per module, and the real ``smg launch`` in front of them with the
recipe's flags (loadtest/smg_gateway.py), once per session-routing policy: ``manual`` (the local recipe's) and
``consistent_hashing`` (the Kubernetes overlay's). Through the gateway, with the official OpenAI SDK:

- every turn of a session lands on one replica: smg's ``x-smg-routed-worker-id`` response header names it, and the
  request id of every turn is in that replica's own request log and in no other;
- the history is kept across turns (turn numbers, growing prompts, the stored messages in order);
- a session created through the gateway is exported from a replica directly, also from the one that never served it
  (the replicas share Redis);
- the facts deploy/gateway/README.md builds on: the gateway does not forward ``X-Session-Id`` (a turn that sends only
  the header is stateless), and ``/v1/sessions/{id}`` through the gateway is smg's own 404 ``unknown_url``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from loadtest.smg_gateway import ROUTED_WORKER_HEADER, GatewayError, SmgGateway, smg_executable
from tests.conftest import KEY_A, TINY_MODEL, session_server_env
from tests.integration.redis_fixtures import skip_or_fail
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # two real replicas: over a minute on a 2-core machine


@pytest.fixture(scope="module")
def replicas(
    tiny_model_repo: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    """Two replicas of the tiny model on one Redis, started side by side."""
    try:
        smg_executable()
    except GatewayError as exc:
        skip_or_fail(str(exc))
    logs = tmp_path_factory.mktemp("gateway-replicas")
    servers = [
        ServerProcess(
            ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
            logs / f"replica-{index}.log",
            env=session_server_env(redis_url),
        )
        for index in range(2)
    ]
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.start(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module", params=["manual", "consistent_hashing"])
def gateway(
    request: pytest.FixtureRequest, replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SmgGateway]:
    log = tmp_path_factory.mktemp("gateway") / f"smg-{request.param}.log"
    with SmgGateway(request.param, {r.root_url: TINY_MODEL for r in replicas}, log) as running:
        yield running


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY_A, max_retries=0, timeout=120)


def _logged_on(replicas: list[ServerProcess], request_id: str) -> list[str]:
    """The replicas whose request log has the canonical line of ``request_id``."""
    found = []
    for replica in replicas:
        for line in replica.log_text().splitlines():
            if request_id not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "request" and entry.get("request_id") == request_id:
                found.append(replica.root_url)
                break
    return found


def _streamed_turn(client: openai.OpenAI, sid: str, text: str, request_id: str) -> tuple[str | None, dict[str, Any]]:
    """One streamed session turn: (the replica smg names, {content, session_id, turn, prompt_tokens})."""
    with client.chat.completions.with_streaming_response.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": text}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Session-Id": sid, "X-Request-Id": request_id},
        extra_body={"session_id": sid},
    ) as response:
        worker = response.headers.get(ROUTED_WORKER_HEADER)
        seen: dict[str, Any] = {"content": ""}
        for chunk in response.parse():
            seen["content"] += "".join(c.delta.content or "" for c in chunk.choices)
            seen.update({k: chunk.model_extra[k] for k in ("session_id", "turn") if k in (chunk.model_extra or {})})
            if chunk.usage is not None:
                seen["prompt_tokens"] = chunk.usage.prompt_tokens
    return worker, seen


def _plain_turn(client: openai.OpenAI, sid: str, text: str, request_id: str) -> tuple[str | None, dict[str, Any]]:
    """One non-streamed session turn, as :func:`_streamed_turn` reports it."""
    raw = client.chat.completions.with_raw_response.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": text}],
        max_tokens=8,
        extra_headers={"X-Session-Id": sid, "X-Request-Id": request_id},
        extra_body={"session_id": sid},
    )
    completion = raw.parse()
    extra = completion.model_extra or {}
    seen = {"content": completion.choices[0].message.content, "session_id": extra.get("session_id")}
    seen.update(turn=extra.get("turn"), prompt_tokens=completion.usage.prompt_tokens if completion.usage else None)
    return raw.headers.get(ROUTED_WORKER_HEADER), seen


def test_every_turn_of_a_session_lands_on_one_replica_and_keeps_its_history(
    gateway: SmgGateway, replicas: list[ServerProcess]
) -> None:
    client = _client(f"{gateway.root}/v1")
    urls = [r.root_url for r in replicas]
    texts = ["My exam went badly today.", "I studied for weeks.", "I feel I let my parents down."]
    sessions = {f"gw-{gateway.policy}-{kind}-{uuid.uuid4().hex[:8]}": kind for kind in ("streamed", "plain")}
    served: dict[str, list[tuple[str | None, str, dict[str, Any]]]] = {sid: [] for sid in sessions}
    for number, text in enumerate(texts, start=1):
        for sid, kind in sessions.items():  # interleaved: the sessions' turns alternate at the gateway
            request_id = f"{sid}-t{number}"
            turn = _streamed_turn if kind == "streamed" else _plain_turn
            worker, seen = turn(client, sid, text, request_id)
            served[sid].append((worker, request_id, seen))

    for sid, turns in served.items():
        workers = {worker for worker, _, _ in turns}
        assert len(workers) == 1 and workers <= set(urls), f"{sid}: turns went to {workers}"
        (worker,) = workers
        for _, request_id, _ in turns:  # the replica's own log agrees with the gateway's header
            wait_until(lambda rid=request_id: _logged_on(replicas, rid), what=f"the request line of {request_id}")
            assert _logged_on(replicas, request_id) == [worker]
        assert [seen["session_id"] for _, _, seen in turns] == [sid] * len(texts)
        assert [seen["turn"] for _, _, seen in turns] == [1, 2, 3]
        prompts = [seen["prompt_tokens"] for _, _, seen in turns]
        assert prompts == sorted(prompts) and prompts[0] < prompts[-1], f"{sid}: the history did not grow: {prompts}"

        # Exported from each replica directly, the one that never served the session included: one Redis.
        for url in urls:
            stored = httpx.get(f"{url}/v1/sessions/{sid}", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
            assert stored.status_code == 200, stored.text
            body = stored.json()
            assert body["turns"] == len(texts)
            assert [(m["role"], m["content"]) for m in body["messages"]] == [
                pair for text, (_, _, seen) in zip(texts, turns, strict=True)
                for pair in (("user", text), ("assistant", seen["content"]))
            ]  # fmt: skip


def test_the_gateway_does_not_forward_the_session_header(gateway: SmgGateway) -> None:
    """Why clients send the body field too: with the header alone the replica never sees a session."""
    client = _client(f"{gateway.root}/v1")
    sid = f"gw-header-only-{uuid.uuid4().hex[:8]}"
    completion = client.chat.completions.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": "Hello there."}],
        max_tokens=4,
        extra_headers={"X-Session-Id": sid},
    )
    assert "session_id" not in (completion.model_extra or {}), "the replica saw a session: smg forwards the header now"


def test_session_routes_are_not_served_by_the_gateway(gateway: SmgGateway) -> None:
    """/v1/sessions/{id} (export, delete) is smg's own 404: it goes to a replica, never through the gateway."""
    headers = {"Authorization": f"Bearer {KEY_A}"}
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{gateway.root}/v1/sessions/any-session", headers=headers, timeout=30)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_url"
