"""Issue 24: does each method's lab recipe learn at the budget where its paper's recipe does not?

For every self-supervised method, the lab's default (its healthy preset, or its bare defaults)
and its paper's recipe (the ``<method>-paper`` preset, where the lab's default differs from it)
train at the same budget on the same data; each run is evaluated by k-NN and the linear probe,
beside the same network at initialisation and raw pixels (the ``baselines`` protocol of the
recipe's run).  The numbers and their story: docs/studies/recipes.md.

    runs/studies/<stamp>-recipes/
      runs/        the ordinary run folders
      table.md     per method: initialisation, paper recipe, lab recipe (k-NN@20, linear)
      table.csv    the same numbers
      figure.png   grouped bars of the same
      study.json   everything, machine-readable
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from pathlib import Path
from typing import Any, Callable

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.evaluate import Cancelled, evaluate_run
from ssl_studio.engine.queue import RunQueue
from ssl_studio.objectives import all_objectives
from ssl_studio.params import ConfigError
from ssl_studio.presets import presets_dir
from ssl_studio.studies.figure import font
from ssl_studio.studies.common import new_study_dir, set_path, study_budget
from ssl_studio.studies.protocols import _method_mapping

COLUMNS = ("init", "paper", "recipe")
COLOURS = {"init": (170, 170, 170), "paper": (240, 160, 80), "recipe": (60, 120, 220)}


def recipe_methods(names: list[str] | None = None) -> list[str]:
    """The self-supervised methods (no captions, no labels), or the ``names`` asked for, checked."""
    available = [n for n, cls in all_objectives().items() if not cls.needs_captions and not cls.needs_labels]
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError("--methods", f"names unknown method(s) {', '.join(unknown)} (available: {', '.join(available)})")
    return names


def paper_mapping(name: str) -> dict[str, Any] | None:
    """The ``<name>-paper`` preset as a run mapping, or None where the lab's default is the paper's recipe."""
    path = presets_dir() / f"{name}-paper.toml"
    if not path.is_file():
        return None
    mapping = tomllib.loads(path.read_text(encoding="utf-8"))
    mapping.pop("preset", None)
    return mapping


def run_recipes_study(data: str = "shapes", minutes_per_run: float = 3.0, out: str | Path = "runs/studies",
                      methods: list[str] | None = None, steps: int | None = None, *, overrides: dict[str, Any] | None = None,
                      control: RunControl | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Train each method's lab recipe and paper recipe at one budget, evaluate both, write the study folder."""
    budget = study_budget(steps, minutes_per_run)
    log = log or (lambda line: None)
    control = control or RunControl()
    names = recipe_methods(methods)
    study_dir = new_study_dir(out, "recipes")
    jobs: list[tuple[str, str]] = []  # (method, "recipe" | "paper")
    configs = []
    for name in names:
        for which, mapping in (("recipe", _method_mapping(name)), ("paper", paper_mapping(name))):
            if mapping is None:
                continue
            set_path(mapping, "data.source", data)
            mapping.update(budget=dict(budget), out=str(study_dir / "runs"), name=f"{name}-{which}")
            for path, value in (overrides or {}).items():
                set_path(mapping, path, value)
            configs.append(config_from_mapping(mapping))
            jobs.append((name, which))

    def on_event(index: int, event) -> None:
        kind = type(event).__name__
        if kind == "Started":
            log(f"[{index + 1}/{len(configs)}] {jobs[index][0]} ({jobs[index][1]}): training "
                f"({', '.join(f'{v} {k}' for k, v in budget.items())})")
        elif kind == "Failed":
            log(f"[{index + 1}/{len(configs)}] {jobs[index][0]} ({jobs[index][1]}): {event.message}")

    results = RunQueue(configs, callback=on_event, control=control).run()
    rows: dict[str, dict[str, Any]] = {}
    for (name, which), cfg, result in zip(jobs, configs, results):
        if not result.ok or result.run_dir is None or control.stop_requested:
            continue
        protocols = ("knn", "linear", "baselines") if which == "recipe" else ("knn", "linear")
        log(f"evaluating {name} ({which})")
        try:
            report = evaluate_run(result.run_dir, protocols, should_stop=lambda: control.stop_requested)
        except Cancelled:
            break
        except ConfigError as exc:
            log(f"{name} ({which}): {exc}")
            continue
        row = rows.setdefault(name, {"method": name, "backbone": cfg.model.backbone})
        row[which] = {"knn": report["knn"]["k20"], "linear": report["linear"]["top1"], "run": str(result.run_dir)}
        if "baselines" in report:
            row["init"] = {"knn": report["baselines"]["init"]["k20"], "linear": report["baselines"]["init"]["linear"]}
            row["pixels_knn"] = report["baselines"]["pixels"]["k20"]
    if not rows:
        raise ConfigError("data.source", f"no run of the study on {data!r} could be evaluated (it needs labelled data)")
    meta = {"data": data, "budget": budget, "methods": [rows[n] for n in names if n in rows]}
    write_study(study_dir, meta)
    return study_dir


def _cell(row: dict[str, Any], which: str, key: str) -> str:
    value = row.get(which, {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def _gain(row: dict[str, Any], key: str) -> str:
    if "recipe" not in row or "init" not in row:
        return "-"
    return f"{row['recipe'][key] - row['init'][key]:+.3f}"


def table_markdown(meta: dict[str, Any]) -> str:
    budget = ", ".join(f"{v} {k}" for k, v in meta["budget"].items())
    pixels = [r["pixels_knn"] for r in meta["methods"] if "pixels_knn" in r]
    lines = [f"# Recipe study on {meta['data']}", "",
             f"Budget per run: {budget}. Scores are top-1 accuracy on the held-out split: k-NN@20 and the linear probe, "
             "for the network at initialisation, after the paper's recipe (the `<method>-paper` preset; '-' where the "
             "lab's default is the paper's) and after the lab's recipe (the default)."
             + (f" Raw pixels: k-NN@20 {pixels[0]:.3f}." if pixels else ""), "",
             "| method | k-NN init | k-NN paper | k-NN recipe | recipe - init | linear init | linear paper | linear recipe | recipe - init |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in meta["methods"]:
        lines.append(f"| {r['method']} | {_cell(r, 'init', 'knn')} | {_cell(r, 'paper', 'knn')} | {_cell(r, 'recipe', 'knn')} | "
                     f"{_gain(r, 'knn')} | {_cell(r, 'init', 'linear')} | {_cell(r, 'paper', 'linear')} | "
                     f"{_cell(r, 'recipe', 'linear')} | {_gain(r, 'linear')} |")
    return "\n".join(lines) + "\n"


def table_csv(meta: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method"] + [f"{p}_{c}" for p in ("knn", "linear") for c in COLUMNS])
    for r in meta["methods"]:
        w.writerow([r["method"]] + [_cell(r, c, p) for p in ("knn", "linear") for c in COLUMNS])
    return buf.getvalue()


def write_study(study_dir: Path, meta: dict[str, Any]) -> None:
    (study_dir / "table.md").write_text(table_markdown(meta), encoding="utf-8")
    (study_dir / "table.csv").write_text(table_csv(meta), encoding="utf-8")
    (study_dir / "study.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    budget = ", ".join(f"{v} {k}" for k, v in meta["budget"].items())
    draw_figure(meta["methods"], study_dir / "figure.png", title=f"Recipe study on {meta['data']} ({budget} per run)")


def draw_figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels (k-NN@20, linear probe): per method, bars for initialisation, paper recipe and lab recipe."""
    from PIL import Image, ImageDraw

    name_w, bar_h, gap, top, panel_w = 110, 12, 10, 80, 360
    row_h = bar_h * len(COLUMNS) + gap
    width = name_w + 2 * (panel_w + 40) + 20
    height = top + row_h * max(1, len(rows)) + 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f_title, f, f_small = font(18), font(13), font(11)
    d.text((12, 12), title, fill="black", font=f_title)
    x_legend = 12
    for which in COLUMNS:
        d.rectangle([x_legend, 44, x_legend + 12, 56], fill=COLOURS[which])
        d.text((x_legend + 18, 42), {"init": "at initialisation", "paper": "paper's recipe", "recipe": "lab's recipe"}[which],
               fill="black", font=f_small)
        x_legend += 140
    for k, key in enumerate(("knn", "linear")):
        x0 = name_w + k * (panel_w + 40)
        d.text((x0, top - 18), "k-NN@20" if key == "knn" else "linear probe", fill="black", font=f)
        values = [r[c][key] for r in rows for c in COLUMNS if c in r]
        hi = max(values, default=1.0) or 1.0
        for i, r in enumerate(rows):
            y = top + i * row_h
            if k == 0:
                d.text((12, y + bar_h), r["method"], fill="black", font=f)
            for j, which in enumerate(COLUMNS):
                if which not in r:
                    continue
                v = r[which][key]
                yb = y + j * bar_h
                d.rectangle([x0, yb, x0 + int((panel_w - 50) * v / hi), yb + bar_h - 2], fill=COLOURS[which])
                d.text((x0 + int((panel_w - 50) * v / hi) + 4, yb - 1), f"{v:.3f}", fill="black", font=f_small)
    d.text((12, height - 24), "top-1 accuracy on the held-out split; every run of a method at the same budget",
           fill=(90, 90, 90), font=f_small)
    img.save(path)
