"""What the CPU engine's dtype and compile mode cost: start time, prefill and decode speed, side by side.

How to run (from the repository root; ~12 minutes on 2 CPU cores, on an otherwise idle machine)::

    python benchmarks/cpu_engine_modes.py
    python benchmarks/cpu_engine_modes.py --rows bfloat16:eager,float32:eager --prefill_prompts 4

Each row starts vLLM's offline ``LLM`` on the manifest's model folder in a fresh process (the manifest's
``max_model_len``, prefix caching off so that every prompt is computed) and measures:

- ``load_s``: constructing the engine (model load, and for ``compiled`` the torch.compile / inductor build);
- prefill tokens/s: ``prefill_prompts`` prompts of ``prefill_tokens`` tokens, one output token each;
- decode tokens/s: ``decode_prompts`` short prompts (about 60 tokens, the side-by-side benchmark's shape), each
  generating exactly ``decode_tokens`` tokens (``ignore_eos``, a seed per request, the manifest's temperature).

Rows are ``dtype:mode`` with mode ``eager``, ``compiled`` (vLLM's compile cache in a fresh temporary folder: the first
start on a machine) or ``compiled-warm`` (the same folder again: every later start). The CPU's bfloat16 support is
recorded (AVX512-BF16 / AMX flags): without it vLLM's CPU kernels emulate bfloat16. Results:
``benchmarks/results/cpu_engine_modes.json`` (git SHA, date, machine, load average, the command).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/cpu_engine_modes.py` without installing the package
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402

MODES = ("eager", "compiled", "compiled-warm")


@dataclass
class ModesConfig:
    """Settings for ``benchmarks/cpu_engine_modes.py``."""

    model: str = field(default="sweetiechat", metadata={"help": "Manifest under model_repo/."})
    rows: str = field(
        default="bfloat16:eager,float32:eager,float32:compiled,float32:compiled-warm",
        metadata={"help": "Comma-separated dtype:mode rows, in order (compiled-warm reuses compiled's cache)."},
    )
    prefill_prompts: int = field(default=8, metadata={"help": "Prompts in the prefill measurement."})
    prefill_tokens: int = field(default=430, metadata={"help": "Tokens per prefill prompt."})
    decode_prompts: int = field(default=16, metadata={"help": "Concurrent requests in the decode measurement."})
    decode_tokens: int = field(default=64, metadata={"help": "Tokens generated per decode request."})
    kv_cache_gb: int = field(default=2, metadata={"help": "VLLM_CPU_KVCACHE_SPACE (GiB)."})
    results_name: str = field(default="cpu_engine_modes", metadata={"help": "benchmarks/results/<name>.json."})
    child: str = field(default="", metadata={"help": "Internal: run one row in this process and print JSON."})

    def parsed_rows(self) -> list[tuple[str, str]]:
        rows = []
        for item in self.rows.split(","):
            dtype, _, mode = item.strip().partition(":")
            if dtype not in ("bfloat16", "float32", "float16") or mode not in MODES:
                raise ValueError(f"rows: {item!r} is not dtype:mode with mode one of {', '.join(MODES)}")
            rows.append((dtype, mode))
        return rows


def measure(config: ModesConfig, dtype: str, mode: str) -> dict[str, Any]:
    """One row, in this process."""
    from app.config import Settings
    from app.core.manifest import find_manifest
    from app.engine.vllm_engine import allow_seeded_chunked_prefill
    from app.materialize import resolve_source

    settings = Settings()
    manifest = find_manifest(config.model, settings.model_repo)
    model_path = resolve_source(manifest, settings.cache_dir)
    allow_seeded_chunked_prefill()
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(
        model=model_path,
        dtype=dtype,
        max_model_len=manifest.engine.max_model_len,
        enable_prefix_caching=False,
        enforce_eager=mode == "eager",
        seed=0,
    )
    load_s = time.perf_counter() - started
    vocab = 40_000
    prefill = [
        {"prompt_token_ids": [100 + (i * 7919 + j * 31) % vocab for j in range(config.prefill_tokens)]}
        for i in range(config.prefill_prompts)
    ]
    short = [{"prompt_token_ids": [100 + (i * 104729 + j * 17) % vocab for j in range(60)]} for i in range(16)]
    llm.generate(short[:2], SamplingParams(max_tokens=4), use_tqdm=False)  # first-call costs out of the timings

    t0 = time.perf_counter()
    llm.generate(prefill, SamplingParams(max_tokens=1), use_tqdm=False)
    prefill_s = time.perf_counter() - t0

    decode_inputs = (short * (config.decode_prompts // len(short) + 1))[: config.decode_prompts]
    params = [
        SamplingParams(
            max_tokens=config.decode_tokens,
            temperature=manifest.sampling.temperature,
            seed=i,
            ignore_eos=True,
        )
        for i in range(len(decode_inputs))
    ]
    t0 = time.perf_counter()
    outputs = llm.generate(decode_inputs, params, use_tqdm=False)
    decode_s = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {
        "dtype": dtype,
        "mode": mode,
        "load_s": round(load_s, 1),
        "prefill_tok_s": round(config.prefill_prompts * config.prefill_tokens / prefill_s, 1),
        "decode_tok_s": round(generated / decode_s, 1),
        "decode_s": round(decode_s, 1),
    }


def run_row(config: ModesConfig, dtype: str, mode: str, cache_root: Path) -> dict[str, Any]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gb)}
    if mode != "eager":
        env["VLLM_CACHE_ROOT"] = str(cache_root / dtype)
    command = [sys.executable, __file__, *sys.argv[1:], "--child", f"{dtype}:{mode}"]
    print(f"[{dtype}:{mode}] running", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"[{dtype}:{mode}] failed with exit status {done.returncode}")
    row: dict[str, Any] = json.loads(lines[-1][4:])
    print(
        f"[{dtype}:{mode}] load {row['load_s']} s, prefill {row['prefill_tok_s']} tok/s, "
        f"decode {row['decode_tok_s']} tok/s",
        flush=True,
    )
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = [
        "| dtype | mode | start (s) | prefill tok/s | decode tok/s | prefill vs first row | decode vs first row |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['mode']} | {r['load_s']} | {r['prefill_tok_s']} | {r['decode_tok_s']} "
            f"| {r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x | {r['decode_tok_s'] / base['decode_tok_s']:.2f}x |"
        )
    return "\n".join(lines)


def main(config: ModesConfig) -> int:
    rows_wanted = config.parsed_rows()
    if config.child:
        dtype, _, mode = config.child.partition(":")
        print("ROW " + json.dumps(measure(config, dtype, mode)), flush=True)
        return 0
    from app.core.cpu import cpu_flags

    started = provenance()
    flags = cpu_flags()
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as cache:
        rows = [run_row(config, dtype, mode, Path(cache)) for dtype, mode in rows_wanted]
    table = markdown(rows)
    print(table)
    write_results(
        config.results_name,
        started,
        {
            "model": config.model,
            "cpu_native": {name: name in flags for name in ("avx512_bf16", "amx_bf16", "avx512_fp16", "avx2")},
            "shape": {
                "prefill": f"{config.prefill_prompts} x {config.prefill_tokens} tokens, 1 output token",
                "decode": f"{config.decode_prompts} x ~60-token prompts, {config.decode_tokens} tokens each",
            },
            "rows": rows,
            "table_markdown": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_config(ModesConfig, None, __doc__.split("\n")[0], "python benchmarks/cpu_engine_modes.py")))
