"""Causal LM vs masked LM from the same initial weights: the chapter's exercise E2 as a study.

Both objectives train the same Transformer (``models/text_lm.py``; every run seeds with the same
seed before it builds, so both start from identical weights) on the same text at the same budget,
and each is read twice, beside the same network at initialisation under its own attention:

- generation: held-out perplexity of the continuations (``engine/text_eval.py``): the causal LM's
  next-token perplexity against the masked LM's left-to-right masked perplexity (same left
  context); the masked LM's pseudo-perplexity and the unigram model are shown beside them;
- understanding: the linear probe (and k-NN@20) of mean-pooled final states on the labelled
  held-out windows, trained on the training windows' labels.

The chapter expects the causal LM to win generation and the masked LM to win or tie
understanding; the study says whether that held, with the gaps.

    runs/studies/<stamp>-text/
      runs/        the two ordinary run folders
      table.md     one row per objective and per network at initialisation
      table.csv    the same numbers
      figure.png   perplexity and probe accuracy, trained against initial
      study.json   everything, machine-readable
"""

from __future__ import annotations

import csv
import json
import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Event, Finished
from ssl_studio.engine.queue import RunQueue
from ssl_studio.engine.runs import RunFolder
from ssl_studio.params import ConfigError
from ssl_studio.studies.figure import font
from ssl_studio.studies.common import new_study_dir, set_path, study_budget

METHODS = (("causal-lm", "Causal LM"), ("masked-lm", "Masked LM"))
STUDY_DEFAULTS = {"batch_size": 64, "probe.every": 100, "probe.visuals_every": 0, "data.resolution": 32}


@dataclass
class TextRow:
    method: str
    objective: str
    trained: bool
    steps: int = 0
    train_seconds: float | None = None
    tokens_per_s: float | None = None
    perplexity: float | None = None  # the comparable generation number (left context only)
    score: str = ""
    pseudo_perplexity: float | None = None  # masked LM only: both sides visible
    unigram: float | None = None
    linear_top1: float | None = None
    knn_k20: float | None = None
    effective_rank: float | None = None
    status: str = ""
    run_dir: str = ""


def _config(objective: str, data: str, budget: dict[str, Any], out: Path, overrides: dict[str, Any]):
    mapping: dict[str, Any] = {"objective": {"name": objective}, "data": {"source": data}, "budget": dict(budget),
                               "out": str(out), "name": objective}
    for key, value in {**STUDY_DEFAULTS, **overrides}.items():
        set_path(mapping, key, value)
    try:
        return config_from_mapping(mapping)
    except ConfigError as exc:
        raise ConfigError(exc.field or "--set", f"does not make a valid {objective} run: {exc.message}") from None


def _at_initialisation(cfg, label: str) -> TextRow:
    """The run's network exactly as it started (same seed, same build), read by the same protocols."""
    from ssl_studio.engine import diagnostics
    from ssl_studio.engine.build import initial_objective, load_data
    from ssl_studio.engine.evaluate import embed_images, knn_protocol, linear_protocol
    from ssl_studio.engine.text_eval import perplexity_protocol

    data = load_data(cfg)
    objective = initial_objective(cfg, data).eval()
    device = torch.device("cpu")
    with torch.no_grad():
        train = embed_images(objective.embed, data.images[data.train_index], lambda x: x)
        val = embed_images(objective.embed, data.images[data.val_index], lambda x: x)
    y_train, y_val = data.labels[data.train_index], data.labels[data.val_index]
    ppl = perplexity_protocol(objective, data, device)
    return TextRow(method=f"{label} at initialisation", objective=cfg.objective.name, trained=False, perplexity=ppl["perplexity"],
                   score=ppl["score"], pseudo_perplexity=ppl["scores"].get("pseudo"), unigram=ppl["unigram"],
                   linear_top1=linear_protocol(train, y_train, val, y_val, data.num_classes, seed=cfg.seed)["top1"],
                   knn_k20=knn_protocol(train, y_train, val, y_val, data.num_classes)["k20"],
                   effective_rank=diagnostics.effective_rank(val[: cfg.probe.size]), status="initial")


def run_text_study(data: str = "text:builtin", minutes_per_run: float = 5.0, out: str | Path = "runs/studies",
                   steps: int | None = None, overrides: dict[str, Any] | None = None, control: RunControl | None = None,
                   log: Callable[[str], None] | None = None, *, callback: Callable[[int, Event], None] | None = None) -> Path:
    """Train the causal and the masked LM from the same weights at one budget and write the study folder; returns its path."""
    if not data.startswith(("text:", "text-chars:")):
        raise ConfigError("--data", f"is {data!r}, but the text study trains on text; pass text:builtin or text:PATH")
    budget = study_budget(steps, minutes_per_run)
    overrides = dict(overrides or {})
    study_dir = new_study_dir(out, "text")
    configs = [_config(objective, data, budget, study_dir / "runs", overrides) for objective, _ in METHODS]
    rows = [TextRow(method=label, objective=objective, trained=True) for objective, label in METHODS]

    def on_event(index: int, event: Event) -> None:
        if isinstance(event, Finished) and log:
            s = event.summary
            log(f"[{index + 1}/{len(rows)}] {rows[index].method}: {event.status} after {event.step} steps; perplexity "
                f"{s.get('perplexity', float('nan')):.1f}, linear probe {s.get('linear_top1', float('nan')):.3f}")
        if callback is not None:
            callback(index, event)

    if log:
        log(f"text study: {len(configs)} runs at " + (f"{steps} steps" if steps is not None else f"{minutes_per_run:g} min")
            + f" each -> {study_dir}")
    results = RunQueue(configs, callback=on_event, control=control).run()
    for row, cfg, result in zip(rows, configs, results):
        row.status, row.steps = result.status, result.step
        row.run_dir = str(result.run_dir) if result.run_dir else ""
        if not result.ok:
            if log:
                log(f"{row.method}: {result.status}: {result.message}")
            continue
        report = RunFolder(result.run_dir, create=False).read_report()
        ppl, s = report.get("perplexity", {}), result.summary
        row.perplexity, row.score, row.unigram = ppl.get("perplexity"), ppl.get("score", ""), ppl.get("unigram")
        row.pseudo_perplexity = ppl.get("scores", {}).get("pseudo")
        row.linear_top1, row.knn_k20, row.effective_rank = s.get("linear_top1"), s.get("knn_k20"), s.get("effective_rank")
        row.train_seconds = s.get("train_seconds")
        if row.train_seconds:
            row.tokens_per_s = row.steps * cfg.batch_size * cfg.data.resolution / row.train_seconds
    if log:
        log("reading both networks at initialisation")
    initial = [_at_initialisation(cfg, label) for cfg, (_, label) in zip(configs, METHODS)]
    meta = {"data": data, "budget": budget, "overrides": {**STUDY_DEFAULTS, **overrides}, "seed": configs[0].seed,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.system()} {platform.release()}",
            "python": platform.python_version(), "torch": torch.__version__, "verdict": verdict(rows)}
    write_study(study_dir, rows + initial, meta)
    return study_dir


def verdict(rows: list[TextRow]) -> dict[str, Any]:
    """Whether the causal LM won generation and the masked LM won or tied understanding, with the gaps.

    A tie in probe accuracy is a gap within two standard errors of a binomial accuracy on the
    probe set (unknown here: the rows carry accuracies only, so the caller's note states the count).
    """
    by = {r.objective: r for r in rows if r.trained}
    c, m = by.get("causal-lm"), by.get("masked-lm")
    if c is None or m is None or None in (c.perplexity, m.perplexity, c.linear_top1, m.linear_top1):
        return {"complete": False}
    return {"complete": True, "generation_gap": m.perplexity - c.perplexity, "causal_wins_generation": c.perplexity < m.perplexity,
            "understanding_gap": m.linear_top1 - c.linear_top1, "masked_wins_understanding": m.linear_top1 > c.linear_top1}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


COLUMNS = ("method", "steps", "train s", "tokens/s", "held-out perplexity", "scored as", "pseudo-perplexity", "unigram",
           "linear probe", "k-NN@20", "effective rank")


def _cells(r: TextRow) -> list[str]:
    return [r.method, str(r.steps) if r.trained else "0", _fmt(r.train_seconds, 0), _fmt(r.tokens_per_s, 0), _fmt(r.perplexity, 1),
            r.score, _fmt(r.pseudo_perplexity, 1), _fmt(r.unigram, 1), _fmt(r.linear_top1), _fmt(r.knn_k20), _fmt(r.effective_rank, 1)]


def write_study(study_dir: Path, rows: list[TextRow], meta: dict[str, Any]) -> None:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    v = meta["verdict"]
    if v.get("complete"):
        lines.append("")
        by = {r.objective: r for r in rows if r.trained}
        c, m = by["causal-lm"], by["masked-lm"]
        lines.append(f"Generation: held-out perplexity {c.perplexity:.1f} (causal) against {m.perplexity:.1f} (masked), "
                     f"{'the causal LM wins' if v['causal_wins_generation'] else 'the causal LM does not win'}. Understanding: "
                     f"linear probe {m.linear_top1:.3f} (masked) against {c.linear_top1:.3f} (causal), a gap of "
                     f"{v['understanding_gap']:+.3f} for the masked LM.")
    (study_dir / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(study_dir / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(_cells(r) for r in rows)
    (study_dir / "study.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1), encoding="utf-8")
    draw_figure(study_dir / "figure.png", rows, meta)


def draw_figure(path: Path, rows: list[TextRow], meta: dict[str, Any]) -> None:
    """Two bar panels: held-out perplexity (log scale, unigram as a line) and linear-probe accuracy, initial and trained."""
    from PIL import Image, ImageDraw

    w, h, pad = 900, 420, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    budget = meta["budget"]
    d.text((pad, 12), f"Causal vs masked LM from the same weights, {meta['data']}, "
           + (f"{budget['steps']} steps" if "steps" in budget else f"{budget['minutes']:g} min") + " each", fill="black", font=font(15))
    colours = {True: (60, 110, 200), False: (190, 190, 190)}
    panels = [("held-out perplexity (log scale; lower is better)", "perplexity", True),
              ("linear probe accuracy (higher is better)", "linear_top1", False)]
    panel_w = (w - 3 * pad) // 2
    order = sorted(rows, key=lambda r: (r.objective, r.trained))
    for k, (title, key, log_scale) in enumerate(panels):
        x0, y0, y1 = pad + k * (panel_w + pad), 70, h - 70
        d.text((x0, 44), title, fill="black", font=font(12))
        values = [getattr(r, key) for r in order]
        finite = [v for v in values if v is not None and v > 0]
        if not finite:
            continue
        hi = max(finite + [r.unigram or 0 for r in rows]) if log_scale else 1.0

        def y_of(v: float) -> float:
            if log_scale:
                return y1 - (y1 - y0) * math.log(max(v, 1.0)) / math.log(max(hi, 2.0))
            return y1 - (y1 - y0) * v / hi

        d.line([(x0, y1), (x0 + panel_w, y1)], fill="black")
        bar = panel_w // (len(order) * 2)
        for i, (r, v) in enumerate(zip(order, values)):
            if v is None:
                continue
            bx = x0 + bar // 2 + i * 2 * bar
            d.rectangle([bx, y_of(v), bx + bar, y1], fill=colours[r.trained])
            d.text((bx, y_of(v) - 16), f"{v:.1f}" if log_scale else f"{v:.2f}", fill="black", font=font(11))
            d.text((bx - 6, y1 + 6), ("causal" if r.objective == "causal-lm" else "masked") + ("" if r.trained else "\ninit"),
                   fill="black", font=font(11))
        unigram = next((r.unigram for r in rows if r.unigram), None)
        if log_scale and unigram:
            d.line([(x0, y_of(unigram)), (x0 + panel_w, y_of(unigram))], fill=(200, 60, 60))
            d.text((x0 + 4, y_of(unigram) + 2), f"unigram {unigram:.0f}", fill=(200, 60, 60), font=font(11))
    img.save(path)


__all__ = ["run_text_study"]
