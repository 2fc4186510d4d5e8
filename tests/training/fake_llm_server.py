"""A small scripted OpenAI-compatible server for generation tests: real HTTP on 127.0.0.1, deterministic answers.

It tells the roles apart by their system prompts (seeker, counselor, supporter, judge, scenario writer) and answers
each deterministically from the request; the seed is echoed into seeker and supporter text, so determinism and seed
derivation are visible. Structured roles (counselor, judge, writer) answer JSON, as a server enforcing
``response_format`` would. Like this project's server, every answer carries a ``safety`` extension.

Words in a scenario's situation (seen by the seeker) or topic (seen by the counselor) switch on misbehaviour:

- ``QUIET``: the seeker only ever sends the end marker; ``CONFUSED``: the seeker talks like a counselor;
- ``RISKY``: the seeker's third message trips the crisis screen, so the reply to it is replaced (``action: replace``);
- ``RUDE``: the seeker's lines say "rude", and the judge gives such dialogues empathy 1;
- ``SLOPPY``: the seeker's lines say "sloppy", and the judge finds every other supporter turn (the 1st, 3rd, ...)
  not using its labelled strategy;
- ``PICKY`` (topic): the counselor never answers JSON; ``STUBBORN`` (topic): it stops answering JSON after three
  supporter turns; ``WAVERING`` (topic): its first answer to each conversation is not JSON, the re-ask is.

``fail_next`` holds what to do with the next requests, in order, before answering normally: an HTTP status (an
OpenAI-shaped error with ``retry-after-ms: 1``), ``"garbage"`` (a 200 HTML page), ``"empty"`` (a 200 completion
without choices) or ``"nonsense"`` (a well-formed completion whose text is not JSON). ``fail_role`` holds such
actions per role (e.g. ``{"judge": ["nonsense"]}``: only the judge's next request), ``broken`` one action per role
for every request of that role (that role's endpoint is down or answers garbage). For the scenario writer,
``duplicate_every = n`` makes every answer whose seed is a multiple of n the same text, and ``invalid_every = n``
such answers not JSON (by seed, so concurrency does not change the outcome).
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

SEEKER_LINES = [
    "Rough week. I can't stop thinking about something.",
    "It started a while ago and got worse this month.",
    "I keep replaying it at night instead of sleeping.",
    "Maybe I could try talking to my sister about it.",
    "Thanks, this really helped. [END]",
]
RISKY_LINE = "Honestly I feel hopeless forever and I want to disappear."
STRATEGIES = [
    "Question",
    "Reflection of feelings",
    "Restatement or Paraphrasing",
    "Affirmation and Reassurance",
    "Providing Suggestions",
    "Information",
    "Self-disclosure",
    "Others",
]
# The example of a free-text answer that a regex once read as "Providing Suggestions".
FREE_TEXT_COUNSELOR = "I would not use Providing Suggestions yet; use Question."
VOCABULARY = [
    "morning",
    "evening",
    "sister",
    "brother",
    "landlord",
    "manager",
    "exam",
    "rent",
    "garden",
    "kitchen",
    "phone",
    "letter",
    "doctor",
    "bus",
    "train",
    "office",
    "weekend",
    "holiday",
    "coffee",
    "rain",
    "winter",
    "summer",
    "promise",
    "argument",
    "silence",
    "message",
    "laptop",
    "shift",
    "deadline",
    "market",
    "river",
    "bridge",
    "school",
    "uncle",
    "cousin",
    "neighbour",
    "dog",
    "cat",
    "bakery",
    "clinic",
    "ferry",
    "stairs",
    "window",
    "blanket",
    "recipe",
    "guitar",
    "notebook",
    "receipt",
    "invoice",
    "parcel",
    "wedding",
    "funeral",
    "birthday",
    "bicycle",
    "scooter",
    "football",
    "choir",
    "prayer",
    "harvest",
    "festival",
    "village",
]
DUPLICATE_SITUATION = "I keep thinking about the same thing every night and I cannot sleep because of it at all."
REPLACEMENT = "I'm really glad you told me, and I'm worried about your safety. Please contact a crisis line now."


@dataclass
class ScriptedLLM:
    """State shared between the test and the server thread."""

    fail_next: list[int | str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    duplicate_every: int = 0
    invalid_every: int = 0
    fail_role: dict[str, list[int | str]] = field(default_factory=dict)
    broken: dict[str, int | str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.fail_next.clear()
            self.seen.clear()
            self.fail_role.clear()
            self.broken.clear()
            self.duplicate_every = self.invalid_every = 0

    def role_of(self, system: str) -> str:
        if "Role-play: you are a real person" in system:
            return "seeker"
        if "strategy counselor" in system:
            return "counselor"
        if "emotional supporter" in system:
            return "supporter"
        if "strict judge" in system:
            return "judge"
        if "scenario descriptions" in system:
            return "writer"
        raise AssertionError("unrecognised system prompt")

    def requests_for(self, role: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["_role"] == role]

    def answer(self, body: dict[str, Any], role: str) -> tuple[str, dict[str, Any]]:
        """(content, safety extension) for one request."""
        messages = body["messages"]
        system, user = messages[0]["content"], messages[-1]["content"]
        seed = body.get("seed")
        safe = {"level": "none", "categories": [], "action": "none"}
        if role == "seeker":
            if "QUIET" in system:
                return "[END]", safe
            if "CONFUSED" in system:
                return f"How does that make you feel? I'm here to help. ({seed})", safe
            own_turns = sum(m["role"] == "assistant" for m in messages)
            if "RISKY" in system and own_turns == 2:
                return RISKY_LINE, safe
            line = SEEKER_LINES[min(own_turns, len(SEEKER_LINES) - 1)]
            rude = " Rude people everywhere." if "RUDE" in system else ""
            rude += " Sloppy me." if "SLOPPY" in system else ""
            # An own label to strip; the seed makes every line unique and shows which seed was used.
            text = f"Seeker: {line.replace(' [END]', '')}{rude} (#{seed})"
            return text + (" [END]" if "[END]" in line else ""), safe
        if role == "counselor":
            supporter_turns = len(re.findall(r"^Supporter(?: \[[^\]]*\])?:", user, re.MULTILINE))
            with self.lock:
                self.seen[user] += 1
                first = self.seen[user] == 1
            if "PICKY" in user or ("STUBBORN" in user and supporter_turns >= 3) or ("WAVERING" in user and first):
                return FREE_TEXT_COUNSELOR, safe
            chosen = STRATEGIES[supporter_turns % len(STRATEGIES)]
            return json.dumps({"rationale": f"Turn {supporter_turns}: fits now.", "strategy": chosen}), safe
        if role == "supporter":
            if user.startswith(RISKY_LINE):
                return REPLACEMENT, {"level": "high", "categories": ["suicide"], "action": "replace"}
            strategy = re.search(r'use the strategy "([^"]+)"', system)
            name = strategy.group(1) if strategy else "?"
            # An echoed tag, an own label and a run-on into the seeker's lines: all for the cleaner to remove.
            return f"Supporter: [{name}] A short reply using {name} (#{seed}). Seeker: this should be cut", safe
        if role == "judge":
            labels = re.findall(r"^\d+\. Supporter \[([^\]]+)\]:", user, re.MULTILINE)
            verdict = {
                "empathy": 1 if "Rude people" in user else 4,
                "coherence": 4,
                "role_consistency": 5,
                "safety": 5,
                "strategy_used": [
                    label != "Others" and not ("Sloppy me" in user and number % 2 == 0)
                    for number, label in enumerate(labels)
                ],
            }
            return json.dumps(verdict), safe
        return self.write_situation(user, seed), safe

    def write_situation(self, user: str, seed: object) -> str:
        if self.invalid_every and int(str(seed)) % self.invalid_every == 0:
            return "Sure! Here is a scenario: I feel bad."
        if self.duplicate_every and int(str(seed)) % self.duplicate_every == 0:
            return json.dumps({"situation": DUPLICATE_SITUATION})
        found = {
            key: match.group(1) if (match := re.search(pattern, user)) else "?"
            for key, pattern in (
                ("who", r"Person: aged [^,]+, [^,]+, ([^,]+), from"),
                ("topic", r"Topic: [^,]+, (.+)\.\n"),
            )
        }
        words = random.Random(f"{seed}").sample(VOCABULARY, 14)  # distinct texts for distinct seeds
        situation = f"I am a {found['who']}: {' '.join(words)}, and {found['topic']} weighs on me."
        return json.dumps({"situation": situation})


def build_app(llm: ScriptedLLM) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        system = body["messages"][0]["content"]
        with llm.lock:
            role = llm.role_of(system)
            body["_role"] = role
            llm.requests.append(body)
            queued = llm.fail_role.get(role)
            if role in llm.broken:
                action: int | str = llm.broken[role]
            elif queued:
                action = queued.pop(0)
            else:
                action = llm.fail_next.pop(0) if llm.fail_next else 200
        if action == "garbage":
            return HTMLResponse("<html><body>502 Bad Gateway (proxy)</body></html>", status_code=200)
        if isinstance(action, int) and action != 200:
            error = {"message": f"scripted {action}", "type": "scripted", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=action, headers={"retry-after-ms": "1"})
        content, safety = llm.answer(body, role)
        if action == "nonsense":
            content = "Sure! Overall I would say it went quite well, maybe a four."
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": []
            if action == "empty"
            else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content.split()),
                "total_tokens": prompt_tokens + len(content.split()),
            },
            "safety": safety,
        }
        return JSONResponse(completion)

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


def dead_url() -> str:
    """A base URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
