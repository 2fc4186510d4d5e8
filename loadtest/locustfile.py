"""Locust load test: users hold multi-turn emotional-support sessions and stream every reply.

Each simulated user opens a session with a unique id, sends 3-6 turns (an opener, then follow-ups) with only the new
user message and ``X-Session-Id`` (the server keeps the history), streams the reply over SSE and times it with the raw
HTTP client. Besides the request row (``POST /v1/chat/completions``, full stream duration), it reports custom rows:

- ``TTFT``: time to first content token, ms (name ``first turn`` / ``later turn``: later turns should hit the prefix
  cache);
- ``ITL``: gap between consecutive content chunks, ms (one sample per gap);
- ``TOKENS_PER_S``: completion tokens per second of the whole stream; the value sits in the response-time columns,
  the completion token count in the content-size column.

A request fails on a non-200 status, an in-band error event, a stream that ends without ``data: [DONE]``, a
``session_id`` that does not echo the one sent, or a ``turn`` number that does not advance within the session.

A second, lighter user (``ResponsesSeeker``, one in four) holds the same kind of conversation through the Responses
API: each turn streams ``POST /v1/responses`` with ``previous_response_id`` (the server keeps the chain); it fails on
a non-200 status, an ``error`` or ``response.failed`` event, or a stream without ``response.completed`` /
``response.incomplete``. Its rows are named ``/v1/responses`` and ``responses``.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                  # web UI on :8089
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 2m --csv out/run

Environment: ``SWEETIE_MODEL`` (default ``sweetiechat``), ``SWEETIE_MAX_TOKENS`` (64), ``SWEETIE_THINK_MIN`` /
``SWEETIE_THINK_MAX`` (seconds between turns, 1 and 3), ``SWEETIE_API_KEY`` (sent as a bearer token when set),
``SWEETIE_LEDGER`` (a file: each turn the server confirmed is appended as a JSON line ``{"session_id", "turn",
"message"}``, so a soak test can check afterwards that no committed turn was lost).
See loadtest/README.md.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from locust import HttpUser, between, task
from requests import RequestException

from loadtest.conversations import FOLLOW_UPS, OPENERS

MODEL = os.environ.get("SWEETIE_MODEL", "sweetiechat")
MAX_TOKENS = int(os.environ.get("SWEETIE_MAX_TOKENS", "64"))
THINK_MIN = float(os.environ.get("SWEETIE_THINK_MIN", "1"))
THINK_MAX = float(os.environ.get("SWEETIE_THINK_MAX", "3"))
API_KEY = os.environ.get("SWEETIE_API_KEY", "")
LEDGER = os.environ.get("SWEETIE_LEDGER", "")
MIN_TURNS, MAX_TURNS = 3, 6
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder: feed raw bytes as they arrive, get complete ``data`` payloads."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[newline + 1 :]
            if not line:  # a blank line ends the event
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # comments (": ping") and other fields (event:, id:, retry:) carry nothing we time


@dataclass
class StreamResult:
    """What one streamed reply looked like, from the client's side."""

    started: float
    token_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None
    done: bool = False
    error: str | None = None
    session_id: str | None = None
    turn: int | None = None
    response_id: str | None = None
    finished: float = 0.0

    def handle(self, payload: str, now: float) -> None:
        """Account for one ``data`` payload (a chat chunk, or a typed Responses event)."""
        if payload == "[DONE]":
            self.done = True
            return
        try:
            body: dict[str, Any] = json.loads(payload)
        except json.JSONDecodeError:
            self.error = f"undecodable event: {payload[:80]!r}"
            return
        if isinstance(body.get("type"), str):
            self.handle_response_event(body, now)
            return
        if "error" in body:
            error = body["error"] if isinstance(body["error"], dict) else {"message": body["error"]}
            self.error = f"in-band error: {error.get('code') or error.get('type')}: {error.get('message')}"
            return
        self.session_id = body.get("session_id", self.session_id)
        self.turn = body.get("turn", self.turn)
        if body.get("usage"):
            self.completion_tokens = int(body["usage"].get("completion_tokens", 0))
        for choice in body.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                self.token_times.append(now)

    def handle_response_event(self, event: dict[str, Any], now: float) -> None:
        kind = event["type"]
        if kind == "response.output_text.delta" and event.get("delta"):
            self.token_times.append(now)
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            self.done, self.response_id = True, response.get("id")
            self.completion_tokens = int((response.get("usage") or {}).get("output_tokens", 0))
        elif kind in ("error", "response.failed"):
            error = event if kind == "error" else (event.get("response") or {}).get("error") or {}
            self.error = f"{kind}: {error.get('code')}: {error.get('message')}"

    @property
    def tokens(self) -> int:
        """Completion tokens: the server's usage count, else the number of content chunks."""
        return self.completion_tokens if self.completion_tokens is not None else len(self.token_times)


class SupportSeeker(HttpUser):  # type: ignore[misc]  # locust is not followed by mypy (pyproject)
    """One person in a multi-turn support conversation; starts a new session after 3-6 turns."""

    weight = 3
    wait_time = between(THINK_MIN, THINK_MAX)

    def on_start(self) -> None:
        self.new_session()

    def new_session(self) -> None:
        self.session_id = f"loadtest-{uuid.uuid4().hex}"
        turns = random.randint(MIN_TURNS, MAX_TURNS)
        self.script = [random.choice(OPENERS), *random.sample(FOLLOW_UPS, turns - 1)]
        self.turn = 0
        self.last_server_turn: int | None = None

    @task  # type: ignore[untyped-decorator]
    def chat_turn(self) -> None:
        ok = self.send(self.script[self.turn])
        self.turn += 1
        if not ok or self.turn >= len(self.script):
            self.new_session()  # a failed turn commits nothing server-side; start clean rather than guess

    def send(self, message: str) -> bool:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": message}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
        }
        result, problem = self.post_stream(CHAT_PATH, body, {"X-Session-Id": self.session_id}, self.problem)
        if problem is None:
            self.record(message, result.turn)
        self.report(result, result.finished)
        return problem is None

    def post_stream(
        self, path: str, body: dict[str, Any], headers: dict[str, str], judge: Callable[[StreamResult], str | None]
    ) -> tuple[StreamResult, str | None]:
        """POST one streaming request, read its SSE events into a :class:`StreamResult`, and mark the Locust request
        failed with ``judge``'s problem (None: success). Returns the result and the problem."""
        headers = {**headers, "Accept": "text/event-stream"}
        if API_KEY:
            headers["Authorization"] = f"Bearer {API_KEY}"
        result = StreamResult(started=time.perf_counter())
        with self.client.post(
            path, json=body, headers=headers, stream=True, catch_response=True, name=path, timeout=300
        ) as response:
            if response.status_code != 200:
                refused = f"HTTP {response.status_code}: {_error_message(response.text)}"
                response.failure(refused)
                return result, refused
            decoder = SSEDecoder()
            try:
                for chunk in response.iter_content(chunk_size=None):
                    now = time.perf_counter()
                    for payload in decoder.feed(chunk):
                        result.handle(payload, now)
            except RequestException as exc:
                result.error = f"stream broke: {type(exc).__name__}"
            result.finished = time.perf_counter()
            response.request_meta["response_time"] = (result.finished - result.started) * 1000
            problem = judge(result)
            if problem:
                response.failure(problem)
            else:
                response.success()
        return result, problem

    def record(self, message: str, turn: int | None) -> None:
        """Append a confirmed turn to the ledger (when ``SWEETIE_LEDGER`` is set)."""
        if LEDGER and turn is not None:
            with open(LEDGER, "a", encoding="utf-8") as ledger:
                ledger.write(json.dumps({"session_id": self.session_id, "turn": turn, "message": message}) + "\n")

    def problem(self, result: StreamResult) -> str | None:
        if result.error:
            return result.error
        if not result.done:
            return "stream ended without data: [DONE]"
        if result.session_id is not None and result.session_id != self.session_id:
            return f"session_id {result.session_id!r} does not echo the one sent"
        if result.turn is not None:
            if self.last_server_turn is not None and result.turn <= self.last_server_turn:
                return f"turn {result.turn} did not advance past {self.last_server_turn}"
            self.last_server_turn = result.turn
        return None

    def report(self, result: StreamResult, finished: float, name: str = "chat") -> None:
        fire = self.environment.events.request.fire
        times = result.token_times
        if times:
            ttft = (times[0] - result.started) * 1000
            turn = "first turn" if self.turn == 0 else "later turn"
            fire(
                request_type="TTFT",
                name=turn if name == "chat" else f"{name} {turn}",
                response_time=ttft,
                response_length=0,
            )
        for before, after in pairwise(times):
            fire(request_type="ITL", name=name, response_time=(after - before) * 1000, response_length=0)
        elapsed = finished - result.started
        if result.tokens and elapsed > 0:
            rate = result.tokens / elapsed
            fire(request_type="TOKENS_PER_S", name=name, response_time=rate, response_length=result.tokens)


def _error_message(text: str) -> str:
    """The message of an OpenAI-shaped error body, else the start of the body."""
    try:
        error = json.loads(text)["error"]
        return f"{error.get('code') or error.get('type')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        return text[:120]


class ResponsesSeeker(SupportSeeker):
    """The same conversation through the Responses API: each turn continues the previous response."""

    weight = 1

    def new_session(self) -> None:
        super().new_session()
        self.previous: str | None = None

    def send(self, message: str) -> bool:
        body: dict[str, Any] = {"model": MODEL, "input": message, "stream": True, "max_output_tokens": MAX_TOKENS}
        if self.previous:
            body["previous_response_id"] = self.previous
        result, problem = self.post_stream(RESPONSES_PATH, body, {}, self.completed)
        if problem is None:
            self.previous = result.response_id
        self.report(result, result.finished, name="responses")
        return problem is None

    @staticmethod
    def completed(result: StreamResult) -> str | None:
        return result.error or (None if result.done else "stream ended without response.completed")
