"""Exercise: does an image-text model name colour-shape combinations it never saw?

CLIP and SigLIP train at the same budget on the shapes set with a few
colour-shape pairs held out of training (``data.held_out``: no red triangle is
ever in a training batch, though red things and triangles are), next to the
supervised baseline trained from scratch on the shape labels.  Every run is
then scored on shape classification of the held-out images, separately for
*seen* pairs and *unseen* ones:

* CLIP / SigLIP by zero-shot prompts (no classifier), with retrieval recall@1/5
  in both directions;
* the supervised baseline by its own classifier head;
* all three by a linear probe on their frozen backbone features.

    runs/studies/<stamp>-clip/
      runs/        the ordinary run folders
      table.md     one row per method
      table.csv    the same numbers
      figure.png   seen vs unseen accuracy per method, and retrieval recall
      study.json   everything, machine-readable
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.queue import RunQueue
from ssl_studio.params import ConfigError
from ssl_studio.presets import presets_dir
from ssl_studio.studies.figure import font
from ssl_studio.studies.common import new_study_dir, set_path, study_budget

DEFAULT_HELD_OUT = ("red-triangle", "blue-circle", "green-square", "yellow-star")
METHODS = ("clip", "siglip", "supervised")
_OBJECTIVE = {"clip": {"name": "clip", "loss": "clip"}, "siglip": {"name": "clip", "loss": "siglip"}, "supervised": {"name": "supervised"}}


def _method_mapping(method: str) -> dict[str, Any]:
    """The method's preset (resources/presets/<method>.toml) when it exists, else the bare objective."""
    path = presets_dir() / f"{method}.toml"
    mapping: dict[str, Any] = {}
    if path.is_file():
        mapping = tomllib.loads(path.read_text(encoding="utf-8"))
        mapping.pop("preset", None)
        mapping.pop("ablations", None)
    mapping["objective"] = {**mapping.get("objective", {}), **_OBJECTIVE[method]}
    return mapping


def _splits(imageset, held_out: Sequence[str]) -> dict[str, torch.Tensor]:
    """val (all held-out images), seen (val images of trained pairs), unseen (every image of a held-out pair)."""
    out = {"val": imageset.val_index}
    if held_out and imageset.attributes is not None:
        from ssl_studio.data.shapes import held_out_mask

        banned = held_out_mask(imageset.attributes, list(held_out))
        in_train = torch.zeros(len(imageset), dtype=torch.bool)
        in_train[imageset.train_index] = True
        out["seen"] = imageset.val_index[~banned[imageset.val_index]]
        out["unseen"] = (banned & ~in_train).nonzero().flatten()
    return out


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float | None:
    return float((pred == y).float().mean()) if len(y) else None


@torch.no_grad()
def split_accuracies(run_dir, held_out: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    """Shape accuracy on val / seen / unseen images by a linear probe on the frozen backbone and, for the
    supervised baseline, by its own classifier head."""
    from ssl_studio.engine.evaluate import embed_images, fit_linear, load_trained, standardise
    from ssl_studio.engine.runs import RunFolder

    cfg, data, objective, views, dev, folder, step = load_trained(run_dir, device)
    splits = _splits(data, held_out)
    feats = embed_images(objective.embed, data.images, views.plain, device=dev)
    y = data.labels
    wd = RunFolder(run_dir, create=False).read_report().get("linear", {}).get("weight_decay", 1e-4)
    train_std, all_std = standardise(feats[data.train_index], feats)
    with torch.enable_grad():
        head = fit_linear(train_std, y[data.train_index], data.num_classes, weight_decay=float(wd))
    linear_pred = head(all_std).argmax(1)
    out: dict[str, Any] = {"linear": {k: _accuracy(linear_pred[i], y[i]) for k, i in splits.items()},
                           "images": {k: len(i) for k, i in splits.items()}}
    classifier = getattr(objective, "classifier", None)
    if classifier is not None:
        pred = classifier(feats.to(dev)).argmax(1).cpu()
        out["classifier"] = {k: _accuracy(pred[i], y[i]) for k, i in splits.items()}
    return out


COLUMNS = (
    ("method", "method"), ("status", "status"), ("steps", "steps"),
    ("zero-shot top-1", "zs_top1"), ("zero-shot seen", "zs_seen"), ("zero-shot unseen", "zs_unseen"),
    ("classifier top-1", "clf_top1"), ("classifier seen", "clf_seen"), ("classifier unseen", "clf_unseen"),
    ("linear top-1", "lin_top1"), ("linear seen", "lin_seen"), ("linear unseen", "lin_unseen"), ("k-NN k=20", "knn"),
    ("image→text R@1", "i2t_r1"), ("image→text R@5", "i2t_r5"), ("text→image R@1", "t2i_r1"), ("text→image R@5", "t2i_r5"),
)


def _row(method: str, result, report: dict[str, Any], splits: dict[str, Any] | None) -> dict[str, Any]:
    zs = report.get("zeroshot", {})
    rec = zs.get("recall", {})
    lin = (splits or {}).get("linear", {})
    clf = (splits or {}).get("classifier", {})
    return {
        "method": method, "status": result.status, "steps": result.step,
        "zs_top1": zs.get("top1"), "zs_seen": zs.get("seen"), "zs_unseen": zs.get("unseen"),
        "clf_top1": clf.get("val"), "clf_seen": clf.get("seen"), "clf_unseen": clf.get("unseen"),
        "lin_top1": report.get("linear", {}).get("top1"), "lin_seen": lin.get("seen"), "lin_unseen": lin.get("unseen"),
        "knn": report.get("knn", {}).get("k20"),
        "i2t_r1": rec.get("image_to_text", {}).get("r1"), "i2t_r5": rec.get("image_to_text", {}).get("r5"),
        "t2i_r1": rec.get("text_to_image", {}).get("r1"), "t2i_r5": rec.get("text_to_image", {}).get("r5"),
        "run_dir": str(result.run_dir) if result.run_dir else "",
        "zs_attributes": {k: v.get("top1") for k, v in (zs.get("attributes") or {}).items()},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def run_clip_study(data: str = "shapes", minutes_per_run: float = 5.0, out: str | Path = "runs/studies",
                   held_out: Sequence[str] | None = None, steps: int | None = None, *, overrides: dict[str, Any] | None = None,
                   control: RunControl | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Train CLIP, SigLIP and the supervised baseline at one budget with held-out pairs; write the study folder.

    ``held_out=None`` holds out DEFAULT_HELD_OUT on shapes and nothing on other data; ``steps``
    (when set) replaces ``minutes_per_run`` with a step budget, the same for every method.
    ``overrides``: dotted config paths → values applied to every run (e.g. {"data.num_images": 4000}).
    """
    budget = study_budget(steps, minutes_per_run)
    log = log or (lambda line: None)
    control = control or RunControl()
    held = list(DEFAULT_HELD_OUT if held_out is None and data == "shapes" else (held_out or ()))
    if held:
        if data != "shapes":
            raise ConfigError("--held-out", f"holds out colour-shape pairs, which only the shapes source has, but the data is {data!r}; "
                              "pass no held-out pairs for other data")
        from ssl_studio.data.shapes import parse_held_out

        parse_held_out(held)  # a misspelt pair fails now, not after three runs
    study_dir = new_study_dir(out, "clip")
    configs = []
    for method in METHODS:
        mapping = _method_mapping(method)
        set_path(mapping, "data.source", data)
        set_path(mapping, "data.held_out", list(held))
        mapping.update(budget=dict(budget), out=str(study_dir / "runs"), name=method)
        for path, value in (overrides or {}).items():
            set_path(mapping, path, value)
        configs.append(config_from_mapping(mapping))  # bad overrides fail here, before anything trains

    def on_event(index: int, event) -> None:
        kind = type(event).__name__
        if kind == "Started":
            log(f"[{index + 1}/{len(configs)}] {METHODS[index]}: training ({', '.join(f'{v} {k}' for k, v in budget.items())})")
        elif kind == "Failed":
            log(f"[{index + 1}/{len(configs)}] {METHODS[index]}: {event.message}")

    results = RunQueue(configs, callback=on_event, control=control).run()
    from ssl_studio.engine.runs import RunFolder

    rows = []
    for method, result in zip(METHODS, results):
        report = RunFolder(result.run_dir, create=False).read_report() if result.run_dir else {}
        splits = None
        if result.ok and result.run_dir is not None and not control.stop_requested:
            log(f"{method}: scoring seen and unseen pairs")
            try:
                splits = split_accuracies(result.run_dir, held)
            except ConfigError as exc:
                log(f"{method}: {exc}")
        rows.append(_row(method, result, report, splits))
    if not any(r["status"] in ("completed", "stopped") for r in rows):
        raise ConfigError("data.source", f"no run of the CLIP study on {data!r} finished; see the run folders in {study_dir / 'runs'}")
    meta = {"data": data, "budget": budget, "held_out": held, "methods": list(METHODS), "overrides": overrides or {}}
    write_study(study_dir, rows, meta)
    return study_dir


def write_study(study_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    budget = ", ".join(f"{v} {k}" for k, v in meta["budget"].items())
    held = ", ".join(meta["held_out"]) or "none"
    head = [f"# CLIP study on {meta['data']}", "",
            f"Budget per method: {budget}. Held-out colour-shape pairs (never in a training batch): {held}. "
            "Accuracies are shape classification (10 classes, chance 0.1); *seen* = held-out images whose colour-shape "
            "pair was trained on, *unseen* = every image of a held-out pair. Zero-shot uses class prompts and no classifier; "
            "classifier is the supervised baseline's own head; linear is a probe on the frozen backbone. Recall is over the "
            "held-out image-caption pairs.", ""]
    header = [title for title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[key]) for _, key in COLUMNS) + " |")
    attr_rows = [r for r in rows if r.get("zs_attributes")]
    if attr_rows:
        names = list(attr_rows[0]["zs_attributes"])
        lines += ["", "Zero-shot accuracy of each attribute the captions name (which words the image tower can see):", "",
                  "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for r in attr_rows:
            lines.append(f"| {r['method']} | " + " | ".join(_fmt(r["zs_attributes"].get(n)) for n in names) + " |")
    (study_dir / "table.md").write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([key for _, key in COLUMNS] + ["run_dir"])
    for r in rows:
        w.writerow(["" if r[key] is None else r[key] for _, key in COLUMNS] + [r["run_dir"]])
    (study_dir / "table.csv").write_text(buf.getvalue(), encoding="utf-8")
    (study_dir / "study.json").write_text(json.dumps({**meta, "rows": rows}, indent=2), encoding="utf-8")
    draw_figure(rows, study_dir / "figure.png", title=f"CLIP study on {meta['data']} ({budget} per method; held out: {held})")


def draw_figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Left: seen vs unseen shape accuracy per method (its own head: zero-shot or classifier; and a linear probe).
    Right: retrieval recall@1/5 in both directions for the image-text models."""
    from PIL import Image, ImageDraw

    width, height = 980, 420
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f_title, f, f_small = font(16), font(12), font(10)
    d.text((12, 10), title, fill="black", font=f_title)
    top, bottom = 70, height - 80
    seen_c, unseen_c = (70, 120, 200), (230, 140, 40)

    def axes(x0: int, x1: int, label: str) -> None:
        d.line([x0, top, x0, bottom], fill="black")
        d.line([x0, bottom, x1, bottom], fill="black")
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = bottom - t * (bottom - top)
            d.line([x0 - 4, y, x0, y], fill="black")
            d.text((x0 - 34, y - 6), f"{t:.2f}", fill="black", font=f_small)
        d.text((x0 + 4, top - 22), label, fill="black", font=f)

    def bar(x: float, w: float, v: float | None, colour) -> None:
        if v is None:
            d.text((x, bottom - 14), "-", fill=(120, 120, 120), font=f_small)
            return
        y = bottom - max(0.0, min(1.0, v)) * (bottom - top)
        d.rectangle([x, y, x + w, bottom], fill=colour)
        d.text((x, y - 13), f"{v:.2f}", fill="black", font=f_small)

    # left: groups per method: [own head seen, unseen] [linear seen, unseen]
    x0, x1 = 60, 560
    axes(x0, x1, "shape accuracy: seen vs unseen colour-shape pairs")
    chance_y = bottom - 0.1 * (bottom - top)
    d.line([x0, chance_y, x1, chance_y], fill=(180, 180, 180))
    d.text((x0 + 4, chance_y - 12), "chance", fill=(150, 150, 150), font=f_small)
    group_w = (x1 - x0) / max(1, len(rows))
    for g, r in enumerate(rows):
        gx = x0 + 10 + g * group_w
        own = ("zero-shot", r["zs_seen"], r["zs_unseen"]) if r["zs_top1"] is not None else ("classifier", r["clf_seen"], r["clf_unseen"])
        bw = (group_w - 30) / 4
        bar(gx, bw - 2, own[1], seen_c)
        bar(gx + bw, bw - 2, own[2], unseen_c)
        bar(gx + 2 * bw + 8, bw - 2, r["lin_seen"], tuple(min(255, c + 60) for c in seen_c))
        bar(gx + 3 * bw + 8, bw - 2, r["lin_unseen"], tuple(min(255, c + 60) for c in unseen_c))
        d.text((gx, bottom + 6), r["method"], fill="black", font=f)
        d.text((gx, bottom + 22), f"{own[0]} | linear", fill=(90, 90, 90), font=f_small)
    # right: retrieval
    x0r, x1r = 640, 960
    axes(x0r, x1r, "retrieval recall (held-out pairs)")
    clip_rows = [r for r in rows if r["i2t_r1"] is not None]
    keys = (("i2t_r1", "i2t R@1"), ("i2t_r5", "i2t R@5"), ("t2i_r1", "t2i R@1"), ("t2i_r5", "t2i R@5"))
    palette = ((70, 120, 200), (140, 175, 230), (60, 160, 90), (140, 210, 150))
    gw = (x1r - x0r) / max(1, len(clip_rows))
    for g, r in enumerate(clip_rows):
        gx = x0r + 10 + g * gw
        bw = (gw - 20) / 4
        for k, ((key, _), colour) in enumerate(zip(keys, palette)):
            bar(gx + k * bw, bw - 2, r[key], colour)
        d.text((gx, bottom + 6), r["method"], fill="black", font=f)
    lx = x0r
    for (key, name), colour in zip(keys, palette):
        d.rectangle([lx, bottom + 40, lx + 10, bottom + 50], fill=colour)
        d.text((lx + 14, bottom + 38), name, fill="black", font=f_small)
        lx += 78
    d.rectangle([60, bottom + 40, 70, bottom + 50], fill=seen_c)
    d.text((74, bottom + 38), "seen pairs", fill="black", font=f_small)
    d.rectangle([160, bottom + 40, 170, bottom + 50], fill=unseen_c)
    d.text((174, bottom + 38), "unseen pairs (held out)", fill="black", font=f_small)
    img.save(path)


__all__ = ["DEFAULT_HELD_OUT", "METHODS", "run_clip_study", "split_accuracies", "write_study"]
