"""vLLM plugin: seeded requests survive chunked prefill on CPU.

While a prompt is prefilled in chunks, vLLM 0.32 still samples a token for it after each partial chunk, throws that
token away, and rewinds the request's random generator by its Philox offset (``gen.set_offset(gen.get_offset() - 4)``)
so that a seeded request draws the same numbers however its prompt was split. CPU generators (Mersenne Twister) have
no offset: the rewind raises and the engine core dies, taking every in-flight request with it. The server used to
work around it by turning chunked prefill off on CPU, which costs throughput and inter-token latency under load.

This module is the narrow fix. vLLM loads ``vllm.general_plugins`` entry points in every process, the CPU worker
included; :func:`register` then wraps two methods of the CPU model runner: ``_sample`` saves the generator state of
each partly prefilled request and restores it afterwards (the rewind, done exactly, by state instead of offset), and
``_bookkeeping_sync`` runs with those generators out of sight, so the offset rewind has nothing to do. Requests
without a seed, and every request on GPU, take vLLM's own path unchanged.

It is active only when ``SWEETIE_CPU_SEEDED_CHUNKS=1`` (the server sets it before starting the engine on CPU), so a
``vllm serve`` started from the same environment, such as the baseline in ``loadtest.compare``, runs as shipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

ENV = "SWEETIE_CPU_SEEDED_CHUNKS"
SUPPORTED_VLLM = ("0.32.",)  # the methods wrapped below were read in this version


def register() -> None:
    """Entry point (``vllm.general_plugins``); idempotent, a no-op unless :data:`ENV` is ``1``."""
    if os.environ.get(ENV) != "1":
        return
    import vllm

    if not vllm.__version__.startswith(SUPPORTED_VLLM):
        raise RuntimeError(
            f"{ENV}=1 patches vLLM {SUPPORTED_VLLM} internals, found vLLM {vllm.__version__}; "
            "check vllm/v1/worker/gpu_model_runner.py (_sample, _bookkeeping_sync) and update this plugin"
        )
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    patch(CPUModelRunner)


def patch(runner_class: Any) -> None:
    """Wrap ``runner_class._sample`` and ``runner_class._bookkeeping_sync`` (once)."""
    if getattr(runner_class, "_sweetie_seeded_chunks", False):
        return
    original_sample: Callable[..., Any] = runner_class._sample
    original_bookkeeping: Callable[..., Any] = runner_class._bookkeeping_sync

    def _sample(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = {row: gen.get_state() for row, gen in partly_prefilled_generators(self).items()}
        try:
            return original_sample(self, *args, **kwargs)
        finally:
            for row, state in saved.items():
                self.input_batch.generators[row].set_state(state)

    def _bookkeeping_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        hidden = partly_prefilled_generators(self)
        for row in hidden:
            del self.input_batch.generators[row]
        try:
            return original_bookkeeping(self, *args, **kwargs)
        finally:
            self.input_batch.generators.update(hidden)

    runner_class._sample = _sample
    runner_class._bookkeeping_sync = _bookkeeping_sync
    runner_class._sweetie_seeded_chunks = True


def partly_prefilled_generators(runner: Any) -> dict[int, Any]:
    """Batch row -> generator of each seeded request whose sampled token this step will be discarded."""
    import numpy as np

    generators: dict[int, Any] = runner.input_batch.generators
    if not generators:
        return {}
    rows = np.nonzero(runner.discard_request_mask.np[: runner.input_batch.num_reqs])[0]
    return {int(row): generators[int(row)] for row in rows if int(row) in generators}
