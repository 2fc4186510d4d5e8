"""Evaluate served models on held-out dialogues: each supporter turn is generated from its true context.

How to run (a server per model, e.g. ``python -m app --model sweetiechat-sft --port 8001``)::

    python -m training.evaluate --models base=http://127.0.0.1:8000/v1@sweetiechat \\
        sft=http://127.0.0.1:8001/v1@sweetiechat-sft --data esconv:valid-test --max_turns 600
    python -m training.evaluate --models base=...@sweetiechat tuned=...@sweetiechat-sft --judge pairwise \\
        --judge_url http://judge:8000/v1 --judge_model Qwen/Qwen2.5-72B-Instruct         # win rate, tuned vs base
    python -m training.evaluate --results outputs/eval/base.json outputs/eval/sft.json   # compare saved results

Each model spec is ``label=BASE_URL@served_model`` (``label=`` and ``@served_model`` are optional: the label defaults
to the served name, the served name to the first id of ``GET /models``). Requests go through the official ``openai``
client, at most ``concurrency`` at a time, with the dialogue so far as messages (supporter turns without tags) and no
system prompt, so each server uses its model's own. The same seeded subset of turns is used for every model.

The predicted strategy is the response's ``strategy`` field (the server's parse of a ``[Strategy]`` tag, in
``strategy_mode: model``) when present, else a leading ``[Tag]`` in the content matched against the catalogue. The
metrics (:mod:`training.metrics`: sacrebleu, rouge-score, scikit-learn, each figure with a 95% interval, and the
majority-class and chance baselines beside every strategy figure) go to ``<out_dir>/<label>.json`` per model and to
``comparison.json``, ``comparison.md`` and ``comparison.png``. The client retries 429, 5xx and connection errors
(``retries``, with backoff); a turn that still fails is counted by kind in ``failures`` and left out of the metrics;
it never stops the evaluation. A turn the server's crisis screen framed or replaced (the response's ``safety``
extension) is not the model's own reply: it is counted in ``safety_screened`` and left out of the metrics.

With ``--judge_url``/``--judge_model`` an LLM judge (:mod:`training.eval_judge`, any OpenAI-compatible endpoint)
scores every model's replies on ESConv's human-evaluation axes (``--judge rubric``), and/or compares every other
model with the FIRST one turn by turn (``--judge pairwise``: win rates against it; list the base model first).
Logs carry counts only; ``--save_predictions`` writes the generated text to ``<out_dir>/<label>.predictions.jsonl``
(off by default: conversations are sensitive).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.core.format import chat_messages, parse_reply
from app.core.strategies import StrategyCatalogue, load_catalogue
from training.cli import parse_config
from training.metrics import LONG_REPLY_WORDS, RESAMPLES, Scored, summarize
from training.sft_data import Target, context_messages, load_dialogues, sample_targets, targets_of

# (metric key, column title, format, percent); each cell also shows the 95% interval when the result has one.
TABLE_COLUMNS = (
    ("bleu2", "BLEU-2", "{:.2f}", True),
    ("rouge_l", "ROUGE-L", "{:.2f}", True),
    ("distinct1", "Dist-1", "{:.2f}", True),
    ("distinct2", "Dist-2", "{:.2f}", True),
    ("valid_tag_rate", "valid tag", "{:.1f}", True),
    ("strategy_accuracy", "strategy acc", "{:.1f}", True),
    ("accuracy_minus_majority", "acc - majority", "{:+.1f}", True),
    ("strategy_macro_f1", "strategy macro-F1", "{:.1f}", True),
    ("avg_words", "avg words", "{:.1f}", False),
    ("words_p50", "p50 words", "{:.0f}", False),
    ("words_p90", "p90 words", "{:.0f}", False),
    ("over_60_words", ">60 words", "{:.1f}", True),
    ("cut_off", "cut off", "{:.1f}", True),
)
# Beside these strategy figures: the majority-class and chance baselines of the same metric.
BASELINE_OF = {"strategy_accuracy": "accuracy", "strategy_macro_f1": "macro_f1"}
PERCENT = {key for key, _, _, percent in TABLE_COLUMNS if percent}


class EvalError(Exception):
    """The evaluation cannot run; the message says which input is wrong."""


@dataclass
class EvalConfig:
    """Settings for ``python -m training.evaluate``."""

    models: list[str] = field(
        default_factory=list, metadata={"help": "Models to evaluate: label=BASE_URL@served_model (label=, @ optional)."}
    )
    results: list[str] = field(
        default_factory=list, metadata={"help": "Saved result JSON files to add to the comparison."}
    )
    data: list[str] = field(
        default_factory=lambda: ["esconv:valid-test"],
        metadata={"help": "Held-out ServeForEmo JSONL files and/or esconv:valid-test, esconv:valid."},
    )
    strategies: str | None = field(default=None, metadata={"help": "Deployment strategy catalogue YAML."})
    max_turns: int | None = field(
        default=150, metadata={"help": "Seeded random subset of supporter turns (None: all)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the turn subset, the bootstrap and the judge's order."})
    request_seed: int | None = field(
        default=None,
        metadata={"help": "OpenAI `seed` on every request (None: unseeded)."},
    )
    concurrency: int = field(default=8, metadata={"help": "Requests in flight per model."})
    retries: int = field(default=3, metadata={"help": "Client retries (with backoff) of a 429, 5xx or lost turn."})
    max_tokens: int | None = field(default=None, metadata={"help": "Completion limit per reply (None: the model's)."})
    max_sentences: int | None = field(
        default=None,
        metadata={"help": "SweetieChat sentence limit sent with every request (None: the model's; 0: no limit)."},
    )
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature (None: model default)."})
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling (None: model default)."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer key; default $SWEETIE_EVAL_API_KEY or none."})
    timeout: float = field(default=300.0, metadata={"help": "Seconds per request."})
    resamples: int = field(default=RESAMPLES, metadata={"help": "Bootstrap resamples of the 95% intervals."})
    judge: Literal["off", "rubric", "pairwise", "both"] = field(
        default="off", metadata={"help": "LLM judge: 1-5 rubric per model, and/or win rates against the first model."}
    )
    judge_url: str | None = field(default=None, metadata={"help": "Judge endpoint (any OpenAI-compatible /v1 URL)."})
    judge_model: str | None = field(default=None, metadata={"help": "Judge model name at judge_url."})
    judge_api_key: str | None = field(default=None, metadata={"help": "Judge key; default $SWEETIE_JUDGE_API_KEY."})
    out_dir: str = field(default="outputs/eval", metadata={"help": "Where result JSON, table and chart go."})
    save_predictions: bool = field(default=False, metadata={"help": "Also write generated replies (sensitive)."})

    def __post_init__(self) -> None:
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns: must be at least 1, or None for all (got {self.max_turns})")
        for name in ("concurrency", "resamples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if self.retries < 0:
            raise ValueError(f"retries: must be 0 or more (got {self.retries})")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens: must be at least 1, or None for the model's default (got {self.max_tokens})")
        if self.max_sentences is not None and self.max_sentences < 0:
            raise ValueError(f"max_sentences: must be 0 (no limit) or more (got {self.max_sentences})")
        if self.judge != "off" and not (self.judge_url and self.judge_model):
            raise ValueError(f"judge: {self.judge!r} needs --judge_url and --judge_model")
        for spec in self.models:
            parse_model_spec(spec)


@dataclass(frozen=True)
class Generated:
    """One model reply to one held-out turn."""

    target: Target
    strategy: str | None
    reply: str
    finish_reason: str | None
    safety_action: str = "none"
    """The server's crisis screen on this turn: ``none``, or ``frame``/``replace`` (not the model's own reply)."""


@dataclass(frozen=True)
class ModelSpec:
    label: str
    base_url: str
    served: str | None


@dataclass
class ModelRun:
    """What one model generated for the evaluated turns (None where a turn failed) and why turns failed."""

    spec: ModelSpec
    served: str
    outputs: list[Generated | None]
    failures: Counter[str]
    seconds: float

    @property
    def label(self) -> str:
        return self.spec.label or self.served


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


def _request_options(config: EvalConfig) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config.max_tokens is not None:
        options["max_tokens"] = config.max_tokens
    if config.max_sentences is not None:
        options["extra_body"] = {"max_sentences": config.max_sentences}
    if config.temperature is not None:
        options["temperature"] = config.temperature
    if config.top_p is not None:
        options["top_p"] = config.top_p
    if config.request_seed is not None:
        options["seed"] = config.request_seed
    return options


async def _generate(
    spec: ModelSpec, targets: Sequence[Target], config: EvalConfig, catalogue: StrategyCatalogue
) -> tuple[str, list[Generated | None], Counter[str]]:
    """(served model, per target: what it generated or None, failures by kind: HTTP status, timeout, connection)."""
    import openai

    api_key = config.api_key or os.environ.get("SWEETIE_EVAL_API_KEY") or "none"
    client = openai.AsyncOpenAI(
        base_url=spec.base_url, api_key=api_key, timeout=config.timeout, max_retries=config.retries
    )
    failures: Counter[str] = Counter()
    try:
        served = spec.served
        if served is None:
            try:
                listed = await client.models.list()
            except openai.APIConnectionError as exc:
                raise EvalError(f"{spec.base_url}: cannot reach the server ({exc}); is it running?") from None
            except openai.APIStatusError as exc:
                raise EvalError(f"{spec.base_url}: GET /models answered {exc.status_code} ({exc.message})") from None
            if not listed.data:
                raise EvalError(f"{spec.base_url}: GET /models lists no model")
            served = listed.data[0].id
        name = spec.label or served
        semaphore = asyncio.Semaphore(config.concurrency)
        options = _request_options(config)
        done = 0

        async def one(target: Target) -> Generated | None:
            nonlocal done
            async with semaphore:
                try:
                    reply = await client.chat.completions.create(
                        model=served,
                        messages=chat_messages(context_messages(target), system_prompt=None),  # type: ignore[arg-type]
                        **options,
                    )
                except openai.APIStatusError as exc:  # after the client's retries of 429 and 5xx
                    failures[str(exc.status_code)] += 1
                    return None
                except openai.APITimeoutError:
                    failures["timeout"] += 1
                    return None
                except openai.APIConnectionError:
                    failures["connection"] += 1
                    return None
                finally:
                    done += 1
                    if done % 50 == 0 or done == len(targets):
                        print(f"{name}: {done}/{len(targets)} turns ({sum(failures.values())} failed)", file=sys.stderr)
            if not reply.choices:
                failures["empty"] += 1
                return None
            strategy, text = _strategy_of(reply.choices[0].message, catalogue)
            safety = (reply.model_extra or {}).get("safety")
            action = str(safety.get("action", "none")) if isinstance(safety, dict) else "none"
            return Generated(target, strategy, text, reply.choices[0].finish_reason, action)

        outputs = await asyncio.gather(*(one(t) for t in targets))
    finally:
        await client.close()
    if targets and not any(outputs):
        raise EvalError(f"{spec.base_url}: every turn failed ({dict(failures.most_common())}); is the server healthy?")
    return served, list(outputs), failures


def run_model(spec: ModelSpec, targets: Sequence[Target], config: EvalConfig, catalogue: StrategyCatalogue) -> ModelRun:
    """Generate every target with one served model (failed turns counted, not fatal)."""
    started = time.perf_counter()
    served, outputs, failures = asyncio.run(_generate(spec, targets, config, catalogue))
    return ModelRun(spec, served, outputs, failures, round(time.perf_counter() - started, 1))


def result_of(run: ModelRun, config: EvalConfig, catalogue: StrategyCatalogue) -> dict[str, Any]:
    """Score one model's run; JSON-ready (``predictions`` only with ``save_predictions``)."""
    answered = [o for o in run.outputs if o is not None]
    ok = [g for g in answered if g.safety_action == "none"]  # framed or replaced turns are not the model's reply
    screened = Counter(g.safety_action for g in answered if g.safety_action != "none")
    scored = [Scored(g.target.reply, g.target.strategy, g.reply, g.strategy, g.finish_reason) for g in ok]
    result: dict[str, Any] = {
        "label": run.label,
        "base_url": run.spec.base_url,
        "served_model": run.served,
        "data": config.data,
        "requested_turns": len(run.outputs),
        "errors": len(run.outputs) - len(answered),
        "failures": dict(run.failures.most_common()),
        "safety_screened": dict(screened.most_common()),
        "seconds": run.seconds,
        "settings": {
            k: v for k, v in asdict(config).items() if k not in ("models", "results", "api_key", "judge_api_key")
        },
        "metrics": summarize(scored, catalogue.names, resamples=config.resamples, seed=config.seed),
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


def evaluate_model(
    spec: ModelSpec, targets: Sequence[Target], config: EvalConfig, catalogue: StrategyCatalogue
) -> dict[str, Any]:
    """Generate every target with one served model and score it; writes nothing."""
    return result_of(run_model(spec, targets, config, catalogue), config, catalogue)


def judge_runs(runs: Sequence[ModelRun], config: EvalConfig) -> dict[str, dict[str, Any]]:
    """The judge's verdicts by model label: ``rubric`` per model, ``pairwise`` of each model against the first."""
    from training.eval_judge import JudgeEndpoint, judge_pairwise, judge_rubric

    assert config.judge_url and config.judge_model  # checked by EvalConfig
    endpoint = JudgeEndpoint(
        config.judge_url,
        config.judge_model,
        config.judge_api_key,
        concurrency=config.concurrency,
        timeout=config.timeout,
        retries=config.retries,
        seed=config.seed,
        resamples=config.resamples,
    )
    verdicts: dict[str, dict[str, Any]] = {run.label: {} for run in runs}
    for run in runs:
        if config.judge in ("rubric", "both"):
            items = [(g.target, g.reply) for g in run.outputs if g is not None and g.safety_action == "none"]
            verdicts[run.label]["rubric"] = judge_rubric(endpoint, items)
            print(f"judge: {run.label} rubric on {len(items)} replies", file=sys.stderr)
    if config.judge in ("pairwise", "both") and len(runs) > 1:
        first = runs[0]
        for run in runs[1:]:
            pairs = [
                (mine.target, mine.reply, theirs.reply)
                for mine, theirs in zip(run.outputs, first.outputs, strict=True)
                if mine is not None and theirs is not None and mine.safety_action == theirs.safety_action == "none"
            ]
            verdicts[run.label]["pairwise"] = judge_pairwise(endpoint, pairs, (run.label, first.label))
            print(f"judge: {run.label} vs {first.label} on {len(pairs)} turns", file=sys.stderr)
    return verdicts


def _cell(metrics: dict[str, Any], key: str, fmt: str) -> str:
    if key not in metrics:  # a result saved by an older version
        return "n/a"
    value = metrics[key]
    if value is None:
        return "n/a (no tags)"
    scale = 100 if key in PERCENT else 1
    text = fmt.format(value * scale)
    interval = metrics.get("intervals", {}).get(key)
    if interval is not None:
        text += " [" + ", ".join(fmt.format(bound * scale).lstrip("+") for bound in interval) + "]"
    return text


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The comparison as a markdown table (ratios as percentages, 95% intervals in brackets), with the
    majority-class and chance baselines in a column beside each strategy figure."""
    titles = []
    for key, title, _, _ in TABLE_COLUMNS:
        titles.append(title)
        if key in BASELINE_OF:
            titles.append("majority / chance")
    header = "| model | turns | failed | screened | " + " | ".join(titles) + " |"
    rows = [header, "|---|" + "---:|" * (len(titles) + 3)]
    for result in results:
        metrics = result["metrics"]
        screened = sum(result.get("safety_screened", {}).values())
        cells = [str(metrics.get("turns", "n/a")), str(result.get("errors", 0)), str(screened)]
        for key, _, fmt, _ in TABLE_COLUMNS:
            cells.append(_cell(metrics, key, fmt))
            if key in BASELINE_OF:
                base = metrics.get("baselines", {})
                if "majority" in base:
                    name = BASELINE_OF[key]
                    cells.append(f"{100 * base['majority'][name]:.1f} / {100 * base['chance'][name]:.1f}")
                else:
                    cells.append("n/a")
        rows.append(f"| {result['label']} | " + " | ".join(cells) + " |")
    notes = []
    if results:
        metrics = results[0]["metrics"]
        majority = metrics.get("baselines", {}).get("majority", {})
        notes.append(
            "Percentages except words; [95% interval]: bootstrap over turns (BLEU-2: sacrebleu's; Dist-n: jackknife). "
            "majority / chance: always the most common reference strategy"
            + (f" ({majority['strategy']})" if majority else "")
            + " / uniformly random among the catalogue's strategies, scored on the same turns. "
            "acc - majority: strategy accuracy minus the majority baseline, paired on each resample. "
            "n/a (no tags): the model writes no strategy tags, so it is not scored on strategy. "
            "failed: turns that still failed after retries; screened: turns the crisis screen framed or replaced "
            "(not the model's reply); both are left out of the figures. "
            f"Reference replies average {metrics.get('reference_avg_words', 0):.1f} words"
            + (
                f" (p50 {metrics['reference_words_p50']:.0f}, p90 {metrics['reference_words_p90']:.0f})."
                if "reference_words_p50" in metrics
                else "."
            )
        )
    return "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def judge_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables of the judge's rubric means and pairwise win rates (empty when nothing was judged)."""
    from training.eval_judge import AXES

    def cell(value: float | None, interval: list[float] | None, scale: float, fmt: str) -> str:
        if value is None:
            return "n/a"
        bounds = f" [{fmt.format(interval[0] * scale)}, {fmt.format(interval[1] * scale)}]" if interval else ""
        return fmt.format(value * scale) + bounds

    out = []
    rubric = [(r["label"], r["judge"]["rubric"]) for r in results if "rubric" in r.get("judge", {})]
    if rubric:
        out.append("| model (judge 1-5) | judged | failed | " + " | ".join(AXES) + " |")
        out.append("|---|" + "---:|" * (len(AXES) + 2))
        for label, verdict in rubric:
            cells = [cell(verdict["mean"][a], verdict["intervals"].get(a), 1, "{:.2f}") for a in AXES]
            failed = sum(verdict["failed"].values())
            out.append(f"| {label} | {verdict['judged']} | {failed} | " + " | ".join(cells) + " |")
    pairwise = [r["judge"]["pairwise"] for r in results if "pairwise" in r.get("judge", {})]
    if pairwise:
        out.append("")
        out.append("| win rate % (ties count half) | judged | failed | " + " | ".join(AXES) + " |")
        out.append("|---|" + "---:|" * (len(AXES) + 2))
        for verdict in pairwise:
            cells = [cell(verdict["win_rate"][a], verdict["intervals"].get(a), 100, "{:.1f}") for a in AXES]
            failed = sum(verdict["failed"].values())
            title = f"{verdict['first']} vs {verdict['second']}"
            out.append(f"| {title} | {verdict['judged']} | {failed} | " + " | ".join(cells) + " |")
    return "\n".join(out) + ("\n" if out else "")


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """A grouped bar chart of the percentage metrics (with intervals), and the distribution of reply length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, t) for k, t, _, percent in TABLE_COLUMNS if percent and k != "accuracy_minus_majority"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(results), 1)
    for index, result in enumerate(results):
        metrics = result["metrics"]
        values = [100 * (metrics.get(k) or 0) for k, _ in keys]
        errors = [[0.0] * len(keys), [0.0] * len(keys)]
        for i, (k, _) in enumerate(keys):
            interval = metrics.get("intervals", {}).get(k)
            if interval is not None and metrics.get(k) is not None:
                errors[0][i] = max(0.0, values[i] - 100 * interval[0])
                errors[1][i] = max(0.0, 100 * interval[1] - values[i])
        positions = [i + index * width for i in range(len(keys))]
        left.bar(positions, values, width=width, yerr=errors, capsize=2, label=result["label"])
        words = metrics.get("reply_words")
        if words:  # results saved by older versions have no per-reply lengths
            right.hist(words, bins=range(0, max(words) + 10, 5), histtype="step", linewidth=1.5, label=result["label"])
    left.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(keys))])
    left.set_xticklabels([t for _, t in keys], rotation=20, ha="right")
    left.set_ylabel("% (bars: 95% interval)")
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
    """Write comparison.json/.md/.png into ``out_dir``; returns the markdown tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = [{k: v for k, v in r.items() if k != "predictions"} for r in results]
    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    judged = judge_table(results)
    table = markdown_table(results) + ("\n" + judged if judged else "")
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
        raise EvalError(f"--results {path}: not a result file of training.evaluate (needs 'label' and 'metrics')")
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
        runs = [run_model(spec, targets, config, catalogue) for spec in map(parse_model_spec, config.models)]
        verdicts = judge_runs(runs, config) if config.judge != "off" else {}
        for run in runs:
            result = result_of(run, config, catalogue)
            if verdicts.get(run.label):
                result["judge"] = verdicts[run.label]
            label = result["label"]
            path = out_dir / f"{label}.json"
            path.write_text(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2) + "\n")
            if "predictions" in result:
                with (out_dir / f"{label}.predictions.jsonl").open("w", encoding="utf-8") as handle:
                    for row in result["predictions"]:
                        handle.write(json.dumps(row) + "\n")
            print(f"{label}: {result['errors']} failed turns, {result['seconds']} s -> {path}", file=sys.stderr)
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
        EvalConfig, argv, prog="python -m training.evaluate", description="Evaluate served SweetieChat models."
    )
    try:
        main(config)
    except (EvalError, SftDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
