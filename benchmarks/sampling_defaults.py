"""What the sampling defaults buy and cost: top_p and repetition_penalty on held-out ESConv valid turns.

How to run (from the repository root; ~15 minutes at 80 turns on 2 CPU cores, prefill dominates)::

    python benchmarks/sampling_defaults.py                        # 80 turns of ESConv valid, model sweetiechat
    python benchmarks/sampling_defaults.py --turns 200 --speed_rounds 3

The embedded model (the manifest's folder, materialised from the PyPI GGUF like the server does) runs in vLLM's
offline ``LLM`` with the manifest's engine settings (prefix caching on, as the server runs) and the server's CPU
fix for seeded requests under chunked prefill. Every prompt is prefilled once before the first setting (one token
each), so that every setting finds the same prompts in the prefix cache and pays the same (decode-dominated) cost.
Each sampled supporter turn of ESConv valid (true context up to that turn, the manifest's system prompt, oldest
exchanges trimmed in blocks to fit the context, as the server does) is answered under four settings, all at the
manifest's temperature and ``max_tokens`` with the same seed per turn:

- ``a`` manifest: top_p 0.9, repetition_penalty 1.1 (today's shipped defaults)
- ``b`` top_p 1.0, repetition_penalty 1.0 (no nucleus cut, no penalty: vLLM's defaults)
- ``c`` top_p 0.9, repetition_penalty 1.0
- ``d`` top_p 1.0, repetition_penalty 1.1

Quality, on the raw reply and on what the user sees after the manifest's sentence budget (``max_sentences``):
Distinct-2 (corpus-level, with a jackknife 95% interval), the degenerate-repetition rate (share of replies with a
word 4-gram that occurs twice, or the same sentence twice), words per reply, and the share cut off by ``max_tokens``.
Speed: generation tokens/s of the quality pass (natural reply lengths), and a fixed-shape probe (``speed_prompts``
requests of exactly ``speed_tokens`` tokens with ``ignore_eos``, the compare benchmark's shape), run in A/B/B/A order
for ``speed_rounds`` rounds (median and spread). Results: ``benchmarks/results/sampling_defaults.json`` (git SHA,
date, machine, load, the command). No generated text is written (conversations are sensitive).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/sampling_defaults.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.reply_budget import SentenceBudget  # noqa: E402
from app.core.strategies import load_catalogue  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.metrics import distinct, jackknife_interval, ngram_lists  # noqa: E402
from training.sft_data import context_messages, load_dialogues, sample_targets, targets_of  # noqa: E402

SETTINGS: dict[str, dict[str, float]] = {
    "a_manifest_top_p0.9_rep1.1": {"top_p": 0.9, "repetition_penalty": 1.1},
    "b_top_p1.0_rep1.0": {"top_p": 1.0, "repetition_penalty": 1.0},
    "c_top_p0.9_rep1.0": {"top_p": 0.9, "repetition_penalty": 1.0},
    "d_top_p1.0_rep1.1": {"top_p": 1.0, "repetition_penalty": 1.1},
}
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


@dataclass
class BenchConfig:
    """Settings for ``benchmarks/sampling_defaults.py``."""

    model: str = field(default="sweetiechat", metadata={"help": "Manifest under model_repo/."})
    turns: int = field(default=80, metadata={"help": "Sampled supporter turns of ESConv valid."})
    seed: int = field(default=0, metadata={"help": "Seed of the turn subset and base of the per-turn seeds."})
    kv_cache_gb: int = field(default=2, metadata={"help": "VLLM_CPU_KVCACHE_SPACE (GiB)."})
    speed_prompts: int = field(default=16, metadata={"help": "Requests in one fixed-shape speed probe."})
    speed_tokens: int = field(default=64, metadata={"help": "Tokens per request in the speed probe (ignore_eos)."})
    speed_rounds: int = field(default=2, metadata={"help": "A/B/B/A rounds of the speed probe."})
    results_name: str = field(default="sampling_defaults", metadata={"help": "benchmarks/results/<name>.json."})

    def __post_init__(self) -> None:
        for name in ("turns", "speed_prompts", "speed_tokens", "speed_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")


def repeated_4gram(text: str) -> bool:
    """A word 4-gram that occurs at least twice in the reply."""
    grams = ngram_lists([text], 4)[0]
    return any(count > 1 for count in Counter(grams).values())


def repeated_sentence(text: str) -> bool:
    """The same sentence (case, spacing and punctuation ignored; at least three words) twice in the reply."""
    sentences = [" ".join(re.findall(r"\w+", s.lower())) for s in SENTENCE_SPLIT.split(text.strip())]
    sentences = [s for s in sentences if len(s.split()) >= 3]
    return len(sentences) != len(set(sentences))


def degenerate(text: str) -> bool:
    return repeated_4gram(text) or repeated_sentence(text)


def budgeted(text: str, max_sentences: int | None) -> str:
    """The reply the user sees after the server's sentence budget."""
    if not max_sentences:
        return text
    return SentenceBudget(max_sentences).feed(text + " ").rstrip()  # a trailing space lets the last "." count


def quality(replies: Sequence[str], cut_off: Sequence[bool]) -> dict[str, Any]:
    words = [len(r.split()) for r in replies]
    grams = ngram_lists(replies, 2)
    n = len(replies)
    return {
        "replies": n,
        "distinct2": round(distinct(grams), 4),
        "distinct2_ci95": [round(v, 4) for v in jackknife_interval(grams)],
        "degenerate_rate": round(sum(degenerate(r) for r in replies) / n, 4),
        "repeated_4gram_rate": round(sum(repeated_4gram(r) for r in replies) / n, 4),
        "repeated_sentence_rate": round(sum(repeated_sentence(r) for r in replies) / n, 4),
        "words_mean": round(statistics.fmean(words), 1),
        "words_p50": statistics.median(words),
        "empty_rate": round(sum(not r.strip() for r in replies) / n, 4),
        "cut_off_rate": round(sum(cut_off) / n, 4),
    }


def build_prompts(config: BenchConfig, manifest: Any, model_path: str) -> list[list[int]]:
    from app.chat.prompt import PromptRenderer, load_tokenizer

    catalogue = load_catalogue()
    targets = sample_targets(targets_of(load_dialogues(["esconv:valid"], catalogue)), config.turns, config.seed)
    renderer = PromptRenderer(load_tokenizer(model_path), manifest.system_prompt)
    prompts = []
    for target in targets:
        prompt = renderer.render_trimmed(
            [],
            context_messages(target),
            context_len=manifest.engine.max_model_len,
            reply_tokens=manifest.sampling.max_tokens,
            block=4,
            already_dropped=0,
        )
        prompts.append(prompt.token_ids)
    return prompts


def main(config: BenchConfig) -> int:
    started = provenance()
    from app.config import Settings
    from app.core.manifest import find_manifest
    from app.engine.vllm_engine import allow_seeded_chunked_prefill, cpu_dtype, model_folder_dtype
    from app.materialize import resolve_source

    settings = Settings()
    manifest = find_manifest(config.model, settings.model_repo)
    model_path = resolve_source(manifest, settings.cache_dir)
    prompts = build_prompts(config, manifest, model_path)
    print(f"{len(prompts)} ESConv valid turns, prompt tokens mean {statistics.fmean(map(len, prompts)):.0f}")

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_gb))
    allow_seeded_chunked_prefill()
    from vllm import LLM, SamplingParams

    engine = manifest.engine
    load_started = time.perf_counter()
    llm = LLM(
        model=model_path,
        tokenizer=model_path,
        dtype=cpu_dtype(engine, model_folder_dtype(model_path)),  # as the server runs on this CPU
        max_model_len=engine.max_model_len,
        enable_prefix_caching=True,  # every prompt is prefilled once below, so every setting finds it cached
        enforce_eager=engine.enforce_eager,
        max_num_seqs=engine.max_num_seqs,
        seed=config.seed,
    )
    load_s = time.perf_counter() - load_started
    temperature, max_tokens = manifest.sampling.temperature, manifest.sampling.max_tokens
    max_sentences = manifest.sampling.max_sentences
    inputs: list[Any] = [{"prompt_token_ids": ids} for ids in prompts]

    def params(setting: dict[str, float], seed: int, **extra: Any) -> Any:
        return SamplingParams(temperature=temperature, seed=seed, **setting, **extra)

    # warm-up: one small batch, so that no setting pays first-call costs
    llm.generate(inputs[:4], [params(SETTINGS["b_top_p1.0_rep1.0"], 1, max_tokens=8)] * 4, use_tqdm=False)
    t0 = time.perf_counter()
    print(f"prefilling {len(inputs)} prompts once (the prefix cache serves them to every setting)", flush=True)
    llm.generate(inputs, [params(SETTINGS["b_top_p1.0_rep1.0"], 1, max_tokens=1)] * len(inputs), use_tqdm=True)
    print(f"prefilled in {time.perf_counter() - t0:.0f} s", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for name, setting in SETTINGS.items():
        seeded = [params(setting, config.seed * 100_003 + i, max_tokens=max_tokens) for i in range(len(inputs))]
        t0 = time.perf_counter()
        outputs = llm.generate(inputs, seeded, use_tqdm=False)
        wall = time.perf_counter() - t0
        replies = [o.outputs[0].text.strip() for o in outputs]
        generated = sum(len(o.outputs[0].token_ids) for o in outputs)
        cut = [o.outputs[0].finish_reason == "length" for o in outputs]
        results[name] = {
            "sampling": {"temperature": temperature, "max_tokens": max_tokens, **setting},
            "raw": quality(replies, cut),
            "after_sentence_budget": quality([budgeted(r, max_sentences) for r in replies], cut),
            "quality_pass": {
                "wall_s": round(wall, 1),
                "generated_tokens": generated,
                "tok_s": round(generated / wall, 1),
            },
        }
        raw = results[name]["raw"]
        print(
            f"{name}: Dist-2 {raw['distinct2']:.3f}, degenerate {raw['degenerate_rate']:.1%}, "
            f"words {raw['words_mean']:.1f}, {generated / wall:.1f} tok/s ({wall:.0f} s)",
            flush=True,
        )

    # fixed-shape speed probe, A/B/B/A
    probe = inputs[: config.speed_prompts]
    speeds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    for round_ in range(config.speed_rounds):
        for name in names if round_ % 2 == 0 else list(reversed(names)):
            fixed = [
                params(SETTINGS[name], 7 + i, max_tokens=config.speed_tokens, ignore_eos=True)
                for i in range(len(probe))
            ]
            t0 = time.perf_counter()
            outputs = llm.generate(probe, fixed, use_tqdm=False)
            wall = time.perf_counter() - t0
            speeds[name].append(round(sum(len(o.outputs[0].token_ids) for o in outputs) / wall, 1))
    for name, values in speeds.items():
        results[name]["speed_probe"] = {
            "tok_s_median": statistics.median(values),
            "tok_s_min": min(values),
            "tok_s_max": max(values),
            "runs": values,
        }
    base = results["a_manifest_top_p0.9_rep1.1"]["speed_probe"]["tok_s_median"]
    for name in SETTINGS:
        results[name]["speed_probe"]["vs_manifest"] = round(results[name]["speed_probe"]["tok_s_median"] / base, 3)

    table = markdown(results)
    print(table)
    write_results(
        config.results_name,
        started,
        {
            "model": config.model,
            "model_path": model_path,
            "data": "ESConv valid (../shared/data/esconv/valid.jsonl), seeded sample of supporter turns",
            "turns": len(prompts),
            "prompt_tokens_mean": round(statistics.fmean(map(len, prompts)), 1),
            "engine": {
                **engine.model_dump(),
                "enable_prefix_caching": True,
                "dtype_run": cpu_dtype(engine, model_folder_dtype(model_path)),
            },
            "max_sentences": max_sentences,
            "load_s": round(load_s, 1),
            "speed_probe_shape": {
                "prompts": len(probe),
                "tokens": config.speed_tokens,
                "ignore_eos": True,
                "rounds": config.speed_rounds,
            },
            "settings": results,
            "table_markdown": table,
        },
    )
    return 0


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| setting | Dist-2 | degenerate | words/reply | cut off | Dist-2 (budget) | degenerate (budget) "
        "| words (budget) | tok/s (quality pass) | tok/s probe (median) | probe vs manifest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        raw, shown, speed = r["raw"], r["after_sentence_budget"], r["speed_probe"]
        lines.append(
            f"| {name} | {raw['distinct2']:.3f} | {raw['degenerate_rate']:.1%} | {raw['words_mean']:.1f} "
            f"| {raw['cut_off_rate']:.1%} | {shown['distinct2']:.3f} | {shown['degenerate_rate']:.1%} "
            f"| {shown['words_mean']:.1f} | {r['quality_pass']['tok_s']:.1f} | {speed['tok_s_median']:.1f} "
            f"[{speed['tok_s_min']:.1f}-{speed['tok_s_max']:.1f}] | {speed['vs_manifest']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(parse_config(BenchConfig, None, __doc__.split("\n")[0], "python benchmarks/sampling_defaults.py")))
