"""The collapse lab: every healthy/broken preset pair trained at the same budget, side by side.

Each broken preset (``group = "broken"`` in ``resources/presets``) names its healthy
``twin`` and the failure it is ``expected`` to show.  The study trains each preset
once (a healthy preset shared by several broken twins runs once), reads the final
probe of every run, names the failure it observes with the same rule the spectrum
panel uses (``diagnostics.collapse_verdict``), and writes a study folder:

    runs/studies/<stamp>-collapse/
      runs/          the ordinary run folders (open them in the runs browser)
      table.md       one row per run: k-NN, effective rank, cosine, std, expected vs observed
      table.csv      the same numbers for a spreadsheet
      figure.png     bars of k-NN and effective rank per run, and each run's final spectrum
      study.json     everything above, machine-readable

Representational collapse is also observed when the projector's embedding (the
space the loss sees) has effective rank below 2: the collapse_verdict rank rule
applied where the broken objective acts first (a BatchNorm-heavy backbone under
it often shows the same failure only as a low rank).  "slower learning" is
observed when no collapse is flagged but the broken run's k-NN@20 trails its
healthy twin's by more than ``SLOWER_MARGIN`` (about two standard errors of a
k-NN accuracy on ~1000 held-out images).
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ssl_studio.config import RunConfig, config_from_mapping
from ssl_studio.engine import diagnostics
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Event, Finished, Probe
from ssl_studio.engine.queue import RunQueue
from ssl_studio.params import ConfigError
from ssl_studio.presets import PresetInfo, list_presets
from ssl_studio.studies.figure import font as _font
from ssl_studio.studies.common import new_study_dir, set_path, study_budget

SLOWER_MARGIN = 0.03
FAILURES = ("representational collapse", "dimensional collapse", "slower learning", "none")


@dataclass
class StudyRow:
    preset: str
    objective: str
    ablation: str
    group: str
    twin: str
    expected: str
    knn_k20: float | None = None
    effective_rank: float | None = None
    projector_rank: float | None = None
    mean_cosine: float | None = None
    dim_std: float | None = None
    feature_dim: int | None = None
    steps: int = 0
    status: str = "not run"
    observed: str = "-"
    matched: bool | None = None
    run_dir: str = ""
    spectrum: list[float] = field(default_factory=list)


def collapse_pairs(names: list[str] | None = None) -> list[tuple[PresetInfo, PresetInfo]]:
    """(healthy, broken) preset pairs; ``names`` picks broken presets (or healthy ones: all their twins)."""
    presets = {p.name: p for p in list_presets()}
    broken = [p for p in presets.values() if p.group == "broken"]
    if names:
        unknown = [n for n in names if n not in presets]
        if unknown:
            known = ", ".join(sorted(p.name for p in broken))
            raise ConfigError("--pairs", f"names unknown preset(s) {', '.join(unknown)} (broken presets: {known})")
        chosen = [p for p in broken if p.name in names or p.twin in names]
        chosen.sort(key=lambda p: min(names.index(n) for n in (p.name, p.twin) if n in names))
        broken = chosen
    pairs = []
    for b in broken:
        if b.twin not in presets:
            raise ConfigError(f"preset {b.name}", f"names twin {b.twin!r}, which is not a preset")
        pairs.append((presets[b.twin], b))
    if not pairs:
        raise ConfigError("--pairs", "selects no healthy/broken pair")
    return pairs


def _preset_config(info: PresetInfo, data: str, budget: dict[str, Any], out: Path, overrides: dict[str, Any]) -> RunConfig:
    mapping = tomllib.loads(info.path.read_text(encoding="utf-8"))
    mapping.pop("preset", None)
    set_path(mapping, "data.source", data)
    mapping["budget"] = dict(budget)
    mapping["out"] = str(out)
    mapping["name"] = info.name
    for path, value in overrides.items():
        set_path(mapping, path, value)
    try:
        return config_from_mapping(mapping)
    except ConfigError as exc:
        raise ConfigError(f"preset {info.name}", f"does not make a valid run: {exc}") from None


def _observe(row: StudyRow, twin: StudyRow | None) -> str:
    if row.mean_cosine is None or row.effective_rank is None or row.feature_dim is None:
        return "-"
    verdict = diagnostics.collapse_verdict(row.mean_cosine, row.effective_rank, row.feature_dim, row.projector_rank)
    if verdict:
        return verdict
    if twin is not None and row.knn_k20 is not None and twin.knn_k20 is not None and twin.knn_k20 - row.knn_k20 > SLOWER_MARGIN:
        return "slower learning"
    return "none"


def run_collapse_study(data: str = "shapes", minutes_per_run: float = 3.0, out: str | Path = "runs/studies",
                       pairs: list[str] | None = None, steps: int | None = None, *, overrides: dict[str, Any] | None = None,
                       callback: Callable[[int, Event], None] | None = None, control: RunControl | None = None,
                       log: Callable[[str], None] | None = None) -> Path:
    """Train every selected pair at one budget and write the study folder; returns its path.

    ``steps`` (if given) replaces the wall-clock budget: equal steps compare the
    methods at equal optimisation, equal minutes at equal cost.  ``overrides``
    sets any config path for every run (``{"data.num_images": 256, "batch_size": 32}``).
    """
    budget = study_budget(steps, minutes_per_run)
    selected = collapse_pairs(pairs)
    study_dir = new_study_dir(out, "collapse")

    order: list[PresetInfo] = []
    for healthy, broken in selected:
        for p in (healthy, broken):
            if p.name not in [o.name for o in order]:
                order.append(p)
    configs = [_preset_config(p, data, budget, study_dir / "runs", dict(overrides or {})) for p in order]
    rows = [StudyRow(preset=p.name, objective=c.objective.name, ablation=", ".join(c.ablations) or "-", group=p.group,
                     twin=p.twin if p.group == "broken" else "", expected=p.expected if p.group == "broken" else "none")
            for p, c in zip(order, configs)]

    def on_event(index: int, event: Event) -> None:
        row = rows[index]
        if isinstance(event, Probe) and event.final:
            row.projector_rank = event.projector_rank
            row.feature_dim = event.feature_dim
            if event.spectrum is not None:
                row.spectrum = [float(x) for x in np.asarray(event.spectrum)]
        elif isinstance(event, Finished):
            s = event.summary
            row.knn_k20 = s.get("knn_k20")
            row.effective_rank = s.get("effective_rank")
            row.mean_cosine = s.get("mean_cosine")
            row.dim_std = s.get("dim_std")
            if log:
                log(f"[{index + 1}/{len(rows)}] {row.preset}: {event.status} after {event.step} steps"
                    + (f", k-NN@20 {row.knn_k20:.3f}" if row.knn_k20 is not None else "")
                    + (f", rank {row.effective_rank:.1f}" if row.effective_rank is not None else ""))
        if callback is not None:
            callback(index, event)

    if log:
        log(f"collapse study: {len(configs)} runs ({len(selected)} pairs) at "
            + (f"{steps} steps" if steps is not None else f"{minutes_per_run:g} min") + f" each -> {study_dir}")
    queue = RunQueue(configs, callback=on_event, control=control)
    results = queue.run()
    for row, result in zip(rows, results):
        row.status = result.status
        row.steps = result.step
        row.run_dir = str(result.run_dir) if result.run_dir else ""
        if not result.ok and log:
            log(f"{row.preset}: {result.status}: {result.message}")
    by_name = {r.preset: r for r in rows}
    for row in rows:
        if row.status in ("not run",):
            continue
        twin = by_name.get(row.twin) if row.group == "broken" else None
        row.observed = _observe(row, twin)
        if row.observed != "-":
            row.matched = row.observed == row.expected
    reference = None
    if any(r.knn_k20 is not None for r in rows) and not (control is not None and control.stop_requested):
        if log:
            log("reference: the backbone at initialisation and raw pixels, on the same held-out images")
        reference = random_reference(configs[0])
    write_study(study_dir, rows, {"data": data, "budget": budget, "overrides": dict(overrides or {}),
                                  "pairs": [[h.name, b.name] for h, b in selected], "reference": reference})
    return study_dir


def random_reference(cfg: RunConfig) -> dict[str, Any]:
    """What "well above the random backbone" is measured against: the runs' backbone at initialisation, and raw pixels.

    Every preset builds its backbone from the same seed and width, so the first run's initial
    network is every run's; its k-NN@20 uses the same split and settings as each run's final one.
    """
    from ssl_studio.engine.build import build_views, load_data
    from ssl_studio.engine.device import pick_device, pick_precision
    from ssl_studio.engine.evaluate import baselines_protocol

    data = load_data(cfg)
    device = pick_device(cfg.device)
    result = baselines_protocol(cfg, data, build_views(cfg, data), device, pick_precision(cfg.precision, device))
    return {"init_knn_k20": result["init"]["k20"], "init_linear": result["init"]["linear"], "pixels_knn_k20": result["pixels"]["k20"],
            "val_images": result["val_images"], "chance": 1.0 / max(1, data.num_classes)}


# -- outputs ---------------------------------------------------------------------------

COLUMNS = ("preset", "objective", "ablation", "k-NN@20", "effective rank", "projector rank", "mean pairwise cosine",
           "per-dim std", "expected failure", "observed failure", "matched", "steps", "status")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _cells(r: StudyRow) -> list[str]:
    return [r.preset, r.objective, r.ablation, _fmt(r.knn_k20), _fmt(r.effective_rank, 1), _fmt(r.projector_rank, 1),
            _fmt(r.mean_cosine), _fmt(r.dim_std, 4), r.expected, r.observed, _fmt(r.matched), str(r.steps), r.status]


def write_study(study_dir: Path, rows: list[StudyRow], meta: dict[str, Any]) -> None:
    study_dir = Path(study_dir)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    judged = [r for r in rows if r.group == "broken" and r.matched is not None]
    budget = meta.get("budget", {})
    head = [f"# Collapse study on {meta.get('data', '?')}", "",
            "Budget per run: " + ", ".join(f"{v} {k}" for k, v in budget.items()) + ".",
            f"Broken runs whose observed failure matched the expected one: {sum(r.matched for r in judged)} of {len(judged)}.",
            "Observed failure: representational collapse when the projector's embedding (the space the loss sees) has "
            "effective rank < 2; else `collapse_verdict` on the backbone's probe features (mean cosine > 0.95 or rank < 2: "
            f"representational; rank < 5 % of the width and < 8: dimensional); else 'slower learning' when k-NN@20 trails "
            f"the healthy twin by more than {SLOWER_MARGIN}; else none."]
    ref = meta.get("reference")
    if ref:
        head.append(f"Reference on the same {ref['val_images']} held-out images: the backbone at initialisation reaches k-NN@20 "
                    f"{ref['init_knn_k20']:.3f} (linear probe {ref['init_linear']:.3f}), raw pixels {ref['pixels_knn_k20']:.3f}, "
                    f"chance {ref['chance']:.3f}.")
    head.append("")
    (study_dir / "table.md").write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    with open(study_dir / "table.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(_cells(r))
    (study_dir / "study.json").write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2), encoding="utf-8")
    draw_figure(rows, study_dir / "figure.png", title=f"Collapse study on {meta.get('data', '?')}",
                reference_knn=(ref or {}).get("init_knn_k20"))


def draw_figure(rows: list[StudyRow], path: Path, title: str = "Collapse study", reference_knn: float | None = None) -> None:
    """Per run: a k-NN bar, an effective-rank bar and the final spectrum (log scale), drawn with PIL."""
    from PIL import Image, ImageDraw

    row_h, top, left = 56, 64, 320
    bar_w, gap, spec_w = 260, 40, 220
    width = left + 2 * bar_w + 2 * gap + spec_w + 30
    height = top + row_h * max(1, len(rows)) + 40
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f_title, f, f_small = _font(18), _font(13), _font(11)
    d.text((12, 10), title, fill="black", font=f_title)
    x_knn, x_rank = left, left + bar_w + gap
    x_spec = x_rank + bar_w + gap
    d.text((x_knn, 40), "k-NN@20 accuracy (0-1)", fill="black", font=f)
    max_rank = max([r.effective_rank for r in rows if r.effective_rank] + [1.0])
    d.text((x_rank, 40), f"effective rank (0-{max_rank:.0f})", fill="black", font=f)
    d.text((x_spec, 40), "final spectrum (log, normalised)", fill="black", font=f)
    colours = {"healthy": (46, 139, 87), "broken": (200, 60, 50)}
    for i, r in enumerate(rows):
        y = top + i * row_h
        if i % 2:
            d.rectangle([0, y - 4, width, y + row_h - 8], fill=(246, 246, 246))
        colour = colours.get(r.group, (90, 90, 90))
        d.text((12, y), r.preset, fill="black", font=f)
        if r.group == "broken":
            d.text((12, y + 17), f"expected: {r.expected}", fill=(90, 90, 90), font=f_small)
        mark = "" if r.matched is None or r.group == "healthy" else ("  - as expected" if r.matched else "  - NOT as expected")
        d.text((12, y + 31 if r.group == "broken" else y + 17), f"observed: {r.observed}{mark}", fill=(90, 90, 90), font=f_small)
        bh = 22
        for x0, value, scale, text in ((x_knn, r.knn_k20, 1.0, _fmt(r.knn_k20)), (x_rank, r.effective_rank, max_rank, _fmt(r.effective_rank, 1))):
            d.rectangle([x0, y, x0 + bar_w, y + bh], outline=(200, 200, 200))
            if value is not None and math.isfinite(value):
                d.rectangle([x0, y, x0 + int(bar_w * min(1.0, max(0.0, value / scale))), y + bh], fill=colour)
            d.text((x0 + 4, y + bh + 2), text, fill="black", font=f_small)
        if reference_knn is not None:  # the random backbone's k-NN, as a dark tick across each k-NN bar
            xr = x_knn + int(bar_w * min(1.0, max(0.0, reference_knn)))
            d.line([(xr, y - 3), (xr, y + bh + 3)], fill=(30, 30, 30), width=2)
        d.rectangle([x_spec, y, x_spec + spec_w, y + row_h - 12], outline=(200, 200, 200))
        spec = np.asarray(r.spectrum, dtype=np.float64)
        spec = spec[spec > spec.max(initial=0.0) * 1e-9] if len(spec) else spec  # drop the null space (probe smaller than width)
        if len(spec) >= 2:
            logs = np.log10(spec / spec[0])
            lo = max(-8.0, float(logs.min()))
            xs = x_spec + np.linspace(0, spec_w, len(logs))
            ys = y + (row_h - 12) * np.clip(logs / lo if lo < 0 else np.zeros_like(logs), 0, 1)
            d.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=2)
            d.text((x_spec + spec_w - 60, y + 1), f"1e{lo:.0f}", fill=(120, 120, 120), font=f_small)
    d.text((12, height - 24), "green: healthy   red: broken   black tick: the backbone at initialisation   "
                              "spectrum: eigenvalues of the probe features' covariance, largest first",
           fill=(90, 90, 90), font=f_small)
    img.save(path)


__all__ = ["FAILURES", "SLOWER_MARGIN", "StudyRow", "collapse_pairs", "draw_figure", "run_collapse_study", "write_study"]
