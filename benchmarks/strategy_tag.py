"""How a fine-tuned model's strategy tag is best chosen, measured on ESConv valid-dev (never on the test half).

How to run (from the repository root, after ``benchmarks/sft_esconv.py`` exported a model; one CPU core by
default, ``--threads`` for more)::

    python benchmarks/strategy_tag.py --model_dir outputs/sft_esconv/model_repo/sweetiechat-esconv

For each sampled supporter turn of ``esconv:valid-dev`` (the half of ESConv valid that training uses for its eval
loss, so choosing a serving setting on it leaves valid-test untouched), the prompt is the training prompt, which
``tests/unit/test_one_format.py`` shows is exactly what the server sends the engine. The model then scores every
catalogue tag prefix ``[Strategy]`` by teacher forcing (transformers, float32), which gives, per turn:

- ``greedy``: the tag the server's ``strategy_tag: greedy`` picks, a guided choice over the tags at temperature 0
  (token by token: at each position the allowed token with the highest probability);
- ``sampled``: the probability that ``strategy_tag: sampled`` writes the reference tag when the reply, tag included,
  is sampled at the manifest's temperature (per-token softmax of logits / T; a draw that is no catalogue tag counts
  as a miss, as in the SFT benchmark).

- ``planner``: when the model folder holds a learned Strategy Planner (``strategy_planner.npz``, written by
  ``python -m training.strategy_planner``; the server's ``strategy_tag: planner``), the strategy it picks from the
  same conversation (it never sees ESConv valid in training).

It prints and writes ``benchmarks/results/<results_name>.json``: the accuracies with paired 95% bootstrap intervals,
their differences, the majority-class baseline, and what greedy and the planner pick (a choice can collapse onto one
tag).
"""

from __future__ import annotations

import copy
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/strategy_tag.py` without installing the package
    sys.path.insert(0, str(ROOT))

from app.chat.strategy_planner import PLANNER_FILE, StrategyPlanner  # noqa: E402
from app.core.format import tag_prefix  # noqa: E402
from app.core.manifest import load_manifest  # noqa: E402
from app.core.strategies import load_catalogue  # noqa: E402
from app.core.template import text_ids  # noqa: E402
from benchmarks.results_file import provenance, write_results  # noqa: E402
from training.cli import parse_config  # noqa: E402
from training.metrics import bootstrap_intervals, mean_of  # noqa: E402
from training.sft_data import (  # noqa: E402
    build_prompt_completion,
    context_messages,
    end_of_turn_ids,
    load_dialogues,
    sample_targets,
    targets_of,
)

BLEND_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
"""A look at blending (dev only, not served): argmax of the model's whole-tag log-probability plus this weight times
the planner's log-probability (0: the model's most likely whole tag, not the token-by-token greedy choice)."""


@dataclass
class TagConfig:
    """Settings for ``benchmarks/strategy_tag.py``."""

    model_dir: str = field(metadata={"help": "An exported model folder (weights, tokenizer, model.yaml)."})
    data: str = field(default="esconv:valid-dev", metadata={"help": "Turns to score (never the test half)."})
    turns: int = field(default=300, metadata={"help": "Sampled supporter turns of data."})
    seed: int = field(default=0, metadata={"help": "Turn sample and bootstrap seed."})
    resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the 95% intervals."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads."})
    results_name: str = field(default="strategy_tag", metadata={"help": "benchmarks/results/<results_name>.json."})


def tag_logprobs(model: Any, prompt_ids: list[int], tags: dict[str, list[int]], temperature: float) -> dict[str, Any]:
    """Per tag: the log-probability of each of its tokens after ``prompt_ids``, at temperature 1 and at
    ``temperature``."""
    import torch

    with torch.no_grad():
        out = model(torch.tensor([prompt_ids]), use_cache=True)
        first = out.logits[0, -1]
        scores: dict[str, Any] = {}
        for name, ids in tags.items():
            logits = [first]
            if len(ids) > 1:
                cache = copy.deepcopy(out.past_key_values)
                rest = model(torch.tensor([ids[:-1]]), past_key_values=cache, use_cache=True).logits[0]
                logits += list(rest)
            stacked = torch.stack(logits)
            index = torch.tensor(ids)[:, None]
            scores[name] = (
                torch.log_softmax(stacked, -1).gather(1, index)[:, 0].tolist(),
                torch.log_softmax(stacked / temperature, -1).gather(1, index)[:, 0].tolist(),
            )
    return scores


def guided_greedy(tags: dict[str, list[int]], logprobs: dict[str, Any]) -> str:
    """The tag a token-by-token guided choice at temperature 0 writes: at each position, the allowed next token with
    the highest probability (tags sharing a prefix share its log-probabilities)."""
    alive = list(tags)
    position = 0
    while len(alive) > 1:
        ended = [n for n in alive if len(tags[n]) == position]
        if ended:  # a whole tag is a prefix of the others: the choice may stop here; keep it simple and stop
            return ended[0]
        best = max(alive, key=lambda n: logprobs[n][0][position])
        alive = [n for n in alive if tags[n][position] == tags[best][position]]
        position += 1
    return alive[0]


def main(config: TagConfig) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = provenance()
    torch.set_num_threads(config.threads)
    folder = Path(config.model_dir)
    manifest = load_manifest(folder / "model.yaml")
    temperature = manifest.sampling.temperature
    catalogue = load_catalogue()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tags = {name: text_ids(tokenizer, tag_prefix(name)) for name in catalogue.names}
    targets = sample_targets(targets_of(load_dialogues([config.data], catalogue)), config.turns, config.seed)
    max_len = manifest.engine.max_model_len
    end_ids = end_of_turn_ids(tokenizer)
    planner_file = folder / PLANNER_FILE
    planner = StrategyPlanner.load(planner_file, catalogue.names) if planner_file.is_file() else None
    planned: list[str] = []
    blends: list[dict[str, tuple[float, float]]] = []
    """Per turn and tag: the model's teacher-forced log-probability of the whole tag, the planner's."""
    references: list[str] = []
    greedy: list[str] = []
    sampled: list[float] = []
    for i, target in enumerate(targets, 1):
        example = build_prompt_completion(tokenizer, target, manifest.system_prompt, max_len, end_ids)
        if example is None:
            continue
        logprobs = tag_logprobs(model, example.prompt_ids, tags, temperature)
        references.append(target.strategy)
        greedy.append(guided_greedy(tags, logprobs))
        sampled.append(float(np.exp(sum(logprobs[target.strategy][1]))))
        if planner is not None:
            probs = planner.probabilities(context_messages(target))
            planned.append(max(probs, key=probs.__getitem__))  # what planner.choose picks
            blends.append({name: (sum(logprobs[name][0]), float(np.log(p))) for name, p in probs.items()})
        if i % 50 == 0:
            print(f"{i}/{len(targets)} turns", flush=True)
    hits = np.array([g == r for g, r in zip(greedy, references, strict=True)], dtype=float)
    draws = np.array(sampled)
    majority_name, majority_count = Counter(references).most_common(1)[0]
    majority = np.array([r == majority_name for r in references], dtype=float)
    statistics = {
        "greedy": mean_of(hits),
        "sampled": mean_of(draws),
        "greedy_minus_sampled": lambda s: float(hits[s].mean() - draws[s].mean()),
        "greedy_minus_majority": lambda s: float(hits[s].mean() - majority[s].mean()),
    }
    plan_hits = np.array([p == r for p, r in zip(planned, references, strict=True)], dtype=float)
    if planner is not None:
        statistics["planner"] = mean_of(plan_hits)
        statistics["planner_minus_greedy"] = lambda s: float(plan_hits[s].mean() - hits[s].mean())
        statistics["planner_minus_majority"] = lambda s: float(plan_hits[s].mean() - majority[s].mean())
        for weight in BLEND_WEIGHTS:
            picks = [max(b, key=lambda n, b=b: b[n][0] + weight * b[n][1]) for b in blends]
            blend_hits = np.array([p == r for p, r in zip(picks, references, strict=True)], dtype=float)
            statistics[f"blend_{weight:g}"] = mean_of(blend_hits)
    intervals = bootstrap_intervals(
        statistics,
        len(references),
        config.resamples,
        config.seed,
    )
    results = {
        "model_dir": config.model_dir,
        "data": config.data,
        "turns": len(references),
        "temperature": temperature,
        "accuracy": {
            "greedy": round(float(hits.mean()), 4),
            "sampled_expected": round(float(draws.mean()), 4),
            "greedy_minus_sampled": round(float(hits.mean() - draws.mean()), 4),
            "majority": {"strategy": majority_name, "accuracy": round(majority_count / len(references), 4)},
            "chance": round(1 / len(catalogue.names), 4),
        },
        "intervals_95": {name: [round(v, 4) for v in pair] for name, pair in intervals.items()},
        "greedy_picks": dict(Counter(greedy).most_common()),
        "planner_picks": dict(Counter(planned).most_common()) if planner is not None else None,
        "references": dict(Counter(references).most_common()),
    }
    shown = {name: "[" + ", ".join(f"{v:.3f}" for v in pair) + "]" for name, pair in intervals.items()}
    print(
        f"{config.data}, {len(references)} turns: greedy {hits.mean():.3f} {shown['greedy']}, "
        f"sampled at T={temperature} {draws.mean():.3f} {shown['sampled']}, "
        f"difference {hits.mean() - draws.mean():+.3f} {shown['greedy_minus_sampled']}, "
        f"majority ({majority_name}) {majority_count / len(references):.3f}"
    )
    print(f"greedy picks: {results['greedy_picks']}")
    if planner is not None:
        results["accuracy"]["planner"] = round(float(plan_hits.mean()), 4)
        results["accuracy"]["planner_minus_greedy"] = round(float(plan_hits.mean() - hits.mean()), 4)
        every = np.arange(len(references))
        for weight in BLEND_WEIGHTS:
            name = f"blend_{weight:g}"
            results["accuracy"][name] = round(statistics[name](every), 4)
            print(f"blend, planner weight {weight:g}: {statistics[name](every):.3f} {shown[name]}")
        print(
            f"planner {plan_hits.mean():.3f} {shown['planner']}, planner - greedy "
            f"{plan_hits.mean() - hits.mean():+.3f} {shown['planner_minus_greedy']}; picks: {results['planner_picks']}"
        )
    write_results(config.results_name, started, results)
    return results


if __name__ == "__main__":
    main(parse_config(TagConfig, description=__doc__.split("\n")[0], prog="python benchmarks/strategy_tag.py"))
