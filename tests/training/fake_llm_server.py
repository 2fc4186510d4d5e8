"""A small scripted OpenAI-compatible server for role-play tests: real HTTP on 127.0.0.1, deterministic answers.

It tells the three roles apart by their system prompts and answers each deterministically from the request
(the seed is echoed into seeker and supporter text, so determinism and seed derivation are visible). Words in a
scenario's situation switch on misbehaviour: ``QUIET`` (the seeker only ever sends the end marker), ``CONFUSED``
(the seeker talks like a counselor), ``PICKY`` (the counselor never names a strategy). ``fail_next`` holds HTTP
statuses to return, in order, before answering normally.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SEEKER_LINES = [
    "Rough week. I can't stop thinking about something.",
    "It started a while ago and got worse this month.",
    "I keep replaying it at night instead of sleeping.",
    "Maybe I could try talking to my sister about it.",
    "Thanks, this really helped. [END]",
]

# Counselor answers in deliberately varied shapes; the parser must read them all.
COUNSELOR_ANSWERS = [
    "Strategy: Question\nRationale: Learn what happened first.",
    "**Strategy:** reflection\nRationale: Name the feeling before anything else.",
    "I would go with [Restatement]. Rationale: show that the details were heard.",
    "Strategy: affirmation & reassurance - they are being hard on themselves\nRationale: encourage them.",
    "Providing suggestions seems right now.\nRationale: they asked what to do.",
    "Strategy: Information\nRationale: explain how this usually goes.",
]


@dataclass
class ScriptedLLM:
    """State shared between the test and the server thread."""

    fail_next: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def role_of(self, system: str) -> str:
        if "Role-play: you are a real person" in system:
            return "seeker"
        if "strategy counselor" in system:
            return "counselor"
        if "emotional supporter" in system:
            return "supporter"
        raise AssertionError("unrecognised system prompt")

    def requests_for(self, role: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["_role"] == role]

    def answer(self, body: dict[str, Any]) -> str:
        messages = body["messages"]
        system, user = messages[0]["content"], messages[-1]["content"]
        role = self.role_of(system)
        seed = body.get("seed")
        if role == "seeker":
            if "QUIET" in system:
                return "[END]"
            if "CONFUSED" in system:
                return f"How does that make you feel? I'm here to help. ({seed})"
            own_turns = sum(m["role"] == "assistant" for m in messages)
            line = SEEKER_LINES[min(own_turns, len(SEEKER_LINES) - 1)]
            # An own label to strip; the seed makes every line unique and shows which seed was used.
            return f"Seeker: {line.replace(' [END]', '')} (#{seed})" + (" [END]" if "[END]" in line else "")
        if role == "counselor":
            if "PICKY" in user:
                return "Hmm, hard to say."
            supporter_turns = len(re.findall(r"^Supporter(?: \[[^\]]*\])?:", user, re.MULTILINE))
            return COUNSELOR_ANSWERS[supporter_turns % len(COUNSELOR_ANSWERS)]
        strategy = re.search(r'use the strategy "([^"]+)"', system)
        name = strategy.group(1) if strategy else "?"
        # An echoed tag, an own label and a run-on into the seeker's lines: all for the cleaner to remove.
        return f"Supporter: [{name}] A short reply using {name} (#{seed}). Seeker: this should be cut"


def build_app(llm: ScriptedLLM) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        system = body["messages"][0]["content"]
        with llm.lock:
            body["_role"] = llm.role_of(system)
            llm.requests.append(body)
            status = llm.fail_next.pop(0) if llm.fail_next else 200
        if status != 200:
            error = {"message": f"scripted {status}", "type": "scripted", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=status, headers={"retry-after": "0"})
        content = llm.answer(body)
        return JSONResponse(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    return app


@contextmanager
def serve(llm: ScriptedLLM) -> Iterator[str]:
    """Run the app on a free 127.0.0.1 port in a thread; yields the base URL ending in /v1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(llm), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("scripted server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
