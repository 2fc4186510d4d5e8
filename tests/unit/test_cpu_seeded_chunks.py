"""The CPU fix for seeded requests under chunked prefill, on a model runner shaped like vLLM 0.32's.

The real engine path (seeded long prompts under load, chunked prefill on) is
``tests/integration/test_chat_api.py::test_seeded_requests_with_long_prompts_under_load_keep_the_engine_alive``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from app.engine import cpu_seeded_chunks


@dataclass
class _Mask:
    np: Any


@dataclass
class _Batch:
    generators: dict[int, torch.Generator]
    num_reqs: int


@dataclass
class _Runner:
    """What vLLM's runner does with generators: sample from each, then rewind the discarded rows by offset."""

    input_batch: _Batch
    discard_request_mask: _Mask
    drawn: list[float] = field(default_factory=list)

    def _sample(self, logits: Any, spec: Any) -> list[float]:
        gens = self.input_batch.generators
        draws = [float(torch.rand(1, generator=gens[row])) for row in sorted(gens)]
        self.drawn.extend(draws)
        return draws

    def _bookkeeping_sync(self, *args: Any) -> str:
        for row in np.nonzero(self.discard_request_mask.np[: self.input_batch.num_reqs])[0]:
            gen = self.input_batch.generators.get(int(row))
            if gen is not None:
                gen.set_offset(gen.get_offset() - 4)  # raises on a CPU generator, as in vLLM
        return "booked"


def _runner(discard: list[bool]) -> _Runner:
    gens = {row: torch.Generator().manual_seed(100 + row) for row in range(len(discard))}
    return _Runner(_Batch(gens, len(discard)), _Mask(np.array(discard + [False] * 4)))


def test_unpatched_runner_dies_on_a_cpu_generator_rewind() -> None:
    runner = _runner([True, False])
    runner._sample(None, None)
    with pytest.raises(RuntimeError):
        runner._bookkeeping_sync()


def test_a_partly_prefilled_seeded_request_draws_as_if_its_chunk_had_not_been_sampled() -> None:
    class Patched(_Runner):
        pass

    cpu_seeded_chunks.patch(Patched)
    cpu_seeded_chunks.patch(Patched)  # idempotent: vLLM may load plugins more than once per process
    runner = Patched(**vars(_runner([True, False])))
    first_chunk = runner._sample(None, None)
    assert runner._bookkeeping_sync() == "booked"
    assert set(runner.input_batch.generators) == {0, 1}  # hidden during bookkeeping only

    runner.discard_request_mask.np[:] = False  # prompt complete: this step's token is kept
    second = runner._sample(None, None)

    fresh = _runner([False, False])
    expected_row0 = float(torch.rand(1, generator=fresh.input_batch.generators[0]))
    assert second[0] == expected_row0  # row 0 (discarded step) replays the numbers it drew
    assert second[1] != first_chunk[1]  # row 1 (kept step) moved on


def test_inert_unless_the_server_enables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    monkeypatch.delenv(cpu_seeded_chunks.ENV, raising=False)
    before = CPUModelRunner._sample
    cpu_seeded_chunks.register()
    assert CPUModelRunner._sample is before
