"""Exercise E1: do the evaluation protocols agree on which method learned the best representation?

Every self-supervised objective (and the supervised baseline trained from
scratch) runs once at the same budget on the same data; each run is then
evaluated by k-NN, the linear probe, fine-tuning and the label-fraction
protocols.  The study folder holds the table of scores, each method's rank
under each protocol, Kendall's tau between every pair of protocols, and a
figure of the same:

    runs/studies/<stamp>-protocols/
      runs/        the ordinary run folders
      table.md     scores with ranks, the agreement table, and each method against the
                   same network at initialisation, raw pixels and fine-tuning from scratch
      table.csv    the same numbers
      figure.png   a heat table of scores and ranks, and the agreement matrix
      study.json   everything, machine-readable
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Callable

from ssl_studio.config import config_from_mapping, config_to_mapping, load_config
from ssl_studio.engine.compare import Comparison, compare_runs
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.evaluate import Cancelled, evaluate_run
from ssl_studio.engine.queue import RunQueue
from ssl_studio.engine.runs import RunFolder
from ssl_studio.objectives import all_objectives
from ssl_studio.params import ConfigError
from ssl_studio.presets import presets_dir
from ssl_studio.studies.figure import font, score_colour
from ssl_studio.studies.common import new_study_dir, set_path, study_budget

DEFAULT_PROTOCOLS = ("knn", "linear", "finetune", "fractions")
# A method "learned" when both probes beat the same network at initialisation by this much (five
# standard errors of a probe on 1,000 held-out images) and its k-NN beats raw pixels.
LEARNED_MARGIN = 0.08


def _method_mapping(name: str) -> dict[str, Any]:
    """The method's healthy preset when it has one (its tuned defaults), else its bare defaults."""
    path = presets_dir() / f"{name}.toml"
    if path.is_file():
        mapping = tomllib.loads(path.read_text(encoding="utf-8"))
        mapping.pop("preset", None)
        if mapping.get("objective", {}).get("name") == name and not mapping.get("ablations"):
            return mapping
    return {"objective": {"name": name}}


def study_methods(names: list[str] | None = None) -> list[str]:
    available = [n for n, cls in all_objectives().items() if not cls.needs_captions and cls.modality == "images"]
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError("--methods", f"names unknown method(s) {', '.join(unknown)} (available: {', '.join(available)})")
    return names


def run_protocols_study(data: str = "shapes", minutes_per_run: float = 3.0, out: str | Path = "runs/studies",
                        methods: list[str] | None = None, steps: int | None = None, *, overrides: dict[str, Any] | None = None,
                        protocols: tuple[str, ...] = DEFAULT_PROTOCOLS, finetune_epochs: float = 3.0,
                        control: RunControl | None = None, log: Callable[[str], None] | None = None,
                        reuse: str | Path | None = None) -> Path:
    """Train every method at one budget, evaluate each by every protocol, write the study folder; returns its path.

    ``reuse`` names an earlier protocol study's folder: nothing is trained; its runs are evaluated by
    the protocols their reports lack, and its tables are written again.
    """
    log = log or (lambda line: None)
    control = control or RunControl()
    if reuse is not None:
        study_dir, names, run_dirs, data, budget = _earlier_study(Path(reuse))
        return _evaluate_and_write(study_dir, names, run_dirs, data, budget, protocols, finetune_epochs, control, log)
    budget = study_budget(steps, minutes_per_run)
    names = study_methods(methods)
    study_dir = new_study_dir(out, "protocols")
    configs = []
    for name in names:
        mapping = _method_mapping(name)
        set_path(mapping, "data.source", data)
        mapping.update(budget=dict(budget), out=str(study_dir / "runs"), name=name)
        for path, value in (overrides or {}).items():
            set_path(mapping, path, value)
        configs.append(config_from_mapping(mapping))

    def on_event(index: int, event) -> None:
        kind = type(event).__name__
        if kind == "Started":
            log(f"[{index + 1}/{len(configs)}] {names[index]}: training ({', '.join(f'{v} {k}' for k, v in budget.items())})")
        elif kind == "Failed":
            log(f"[{index + 1}/{len(configs)}] {names[index]}: {event.message}")

    queue = RunQueue(configs, callback=on_event, control=control)
    results = queue.run()
    trained = [(name, r.run_dir) for name, r in zip(names, results) if r.ok and r.run_dir is not None]
    return _evaluate_and_write(study_dir, [n for n, _ in trained], [d for _, d in trained], data, budget, protocols,
                               finetune_epochs, control, log)


def _earlier_study(study_dir: Path) -> tuple[Path, list[str], list[Path], str, dict[str, Any]]:
    """(folder, method names, run folders, data, budget) of a study folder written before, read from its runs."""
    runs_dir = study_dir / "runs"
    if not runs_dir.is_dir():
        raise ConfigError("--from", f"{str(study_dir)!r} holds no runs/ folder; name the folder a protocol study wrote")
    names, run_dirs, data, budget = [], [], None, {}
    for run in sorted(p for p in runs_dir.iterdir() if (p / "config.toml").is_file() and RunFolder(p, create=False).checkpoint_path.is_file()):
        cfg = load_config(run / "config.toml")
        names.append(cfg.name or cfg.objective.name)
        run_dirs.append(run)
        data = data or cfg.data.source
        budget = budget or {k: v for k, v in config_to_mapping(cfg)["budget"].items() if v}
    if not run_dirs:
        raise ConfigError("--from", f"{str(runs_dir)!r} holds no run with a config.toml and a checkpoint; nothing to evaluate")
    order = {name: i for i, name in enumerate(study_methods())}  # the study's own order, whatever the folders' times
    ranked = sorted(zip(names, run_dirs), key=lambda pair: order.get(pair[0], len(order)))
    return study_dir, [n for n, _ in ranked], [d for _, d in ranked], data, budget


def _evaluate_and_write(study_dir: Path, names: list[str], run_dirs: list[Path], data: str, budget: dict[str, Any],
                        protocols: tuple[str, ...], finetune_epochs: float, control: RunControl,
                        log: Callable[[str], None]) -> Path:
    """Evaluate each run by the protocols its report lacks, then its references; write the tables."""
    evaluated, labels = [], []
    for name, run_dir in zip(names, run_dirs):
        if control.stop_requested:
            break
        try:
            _evaluate_missing(run_dir, protocols, finetune_epochs, control, lambda missing: log(f"evaluating {name} by {missing}"))
        except Cancelled:
            break
        except ConfigError as exc:
            log(f"{name}: {exc}")
            continue
        evaluated.append(run_dir)
        labels.append(name)
    if not evaluated:
        raise ConfigError("data.source", f"no run of the study on {data!r} could be evaluated (it needs labelled data)")
    try:
        references = evaluate_references(evaluated, labels, "finetune" in protocols, finetune_epochs, control, log)
    except Cancelled:
        references = []
    comparison = compare_runs(evaluated, labels)
    meta = {"data": data, "budget": budget, "protocols": list(protocols), "finetune_epochs": finetune_epochs,
            "runs": [str(p) for p in evaluated], "references": references}
    write_study(study_dir, comparison, meta)
    return study_dir


def _evaluate_missing(run_dir: Path, protocols: tuple[str, ...], finetune_epochs: float, control: RunControl,
                      announce: Callable[[str], None]) -> dict[str, Any]:
    """Evaluate the run by the protocols its report lacks (announced first); returns the report."""
    folder = RunFolder(run_dir, create=False)
    report = folder.read_report()
    missing = [p for p in protocols if p not in report]
    if not missing:
        return report
    announce(", ".join(missing))
    evaluate_run(run_dir, missing, finetune_epochs=finetune_epochs, should_stop=lambda: control.stop_requested)
    return folder.read_report()


def _reference_key(run_dir: Path) -> str:
    """Runs whose backbone starts from the same weights on the same split, at the same precision and with
    the same crop floor (fine-tuning keeps it), share one set of references."""
    cfg = config_to_mapping(load_config(Path(run_dir) / "config.toml"))
    return json.dumps({"model": cfg["model"], "seed": cfg["seed"], "data": cfg["data"], "precision": cfg["precision"],
                       "crop_scale_min": cfg["augment"]["crop_scale_min"]}, sort_keys=True, default=str)


def evaluate_references(run_dirs: list[Path], labels: list[str], finetune: bool, finetune_epochs: float,
                        control: RunControl, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """What each method has to beat, once per distinct initial network: the network at initialisation
    (k-NN@20, linear probe), raw pixels (k-NN@20) and, when fine-tuning is a protocol, the same network
    fine-tuned from its untrained weights at the same budget.  Written into the first such run's report."""
    wanted = ("baselines", "scratch") if finetune else ("baselines",)
    by_key: dict[str, dict[str, Any]] = {}
    for label, run_dir in zip(labels, run_dirs):
        key = _reference_key(run_dir)
        if key in by_key:
            by_key[key]["methods"].append(label)
            continue
        report = _evaluate_missing(run_dir, wanted, finetune_epochs, control,
                                   lambda missing: log(f"evaluating the references of {label}'s network: {missing}"))
        base = report["baselines"]
        by_key[key] = {"backbone": json.loads(key)["model"].get("backbone", ""), "measured_on": label, "methods": [label],
                       "init_knn": base["init"]["k20"], "init_linear": base["init"]["linear"], "pixels_knn": base["pixels"]["k20"],
                       "scratch": report["scratch"]["top1"] if "scratch" in report else None}
    return list(by_key.values())


def targets_markdown(comparison: Comparison, references: list[dict[str, Any]]) -> str:
    """Each method against its references: the gains over initialisation and fine-tuning from scratch."""
    if not references:
        return ""
    ref_of = {m: r for r in references for m in r["methods"]}
    col = {p: comparison.scores.get(p) for p in ("knn", "linear", "finetune")}
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    gain = lambda v, r: "-" if v is None or r is None else f"{v - r:+.3f}"  # noqa: E731
    lines = ["", "## Against the same network at initialisation", "",
             "References, measured once per initial network: " + "; ".join(
                 f"{r['backbone']} at initialisation k-NN@20 {r['init_knn']:.3f}, linear {r['init_linear']:.3f}"
                 + (f", fine-tuned from scratch {r['scratch']:.3f}" if r["scratch"] is not None else "")
                 + f"; raw pixels k-NN@20 {r['pixels_knn']:.3f}" for r in references)
             + f". Learned: both probes at least {LEARNED_MARGIN:g} above initialisation and k-NN above raw pixels.", "",
             "| method | backbone | k-NN@20 | over init | linear | over init | fine-tuning | over scratch | learned |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for i, run in enumerate(comparison.runs):
        ref = ref_of.get(run)
        if ref is None:
            continue
        knn, lin, ft = (col[p][i] if col[p] else None for p in ("knn", "linear", "finetune"))
        misses = []
        if knn is None or knn - ref["init_knn"] < LEARNED_MARGIN:
            misses.append("k-NN gain")
        if lin is None or lin - ref["init_linear"] < LEARNED_MARGIN:
            misses.append("linear gain")
        if knn is None or knn <= ref["pixels_knn"]:
            misses.append("k-NN under pixels")
        learned = "yes" if not misses else "no: " + ", ".join(misses)
        lines.append(f"| {run} | {ref['backbone']} | {fmt(knn)} | {gain(knn, ref['init_knn'])} | {fmt(lin)} | "
                     f"{gain(lin, ref['init_linear'])} | {fmt(ft)} | {gain(ft, ref['scratch'])} | {learned} |")
    return "\n".join(lines) + "\n"


def write_study(study_dir: Path, comparison: Comparison, meta: dict[str, Any]) -> None:
    budget = ", ".join(f"{v} {k}" for k, v in meta["budget"].items())
    head = [f"# Protocol study on {meta['data']}", "", f"Budget per method: {budget}. Scores are top-1 accuracy on the held-out "
            "split; (#n) is the method's rank under that protocol. Kendall's tau compares the rankings of every pair of protocols "
            "(+1: same order, 0: unrelated, -1: reversed)."
            + (f" Fine-tuning: {meta['finetune_epochs']:g} epochs." if meta.get("finetune_epochs") is not None else ""), ""]
    targets = targets_markdown(comparison, meta.get("references") or [])
    (study_dir / "table.md").write_text("\n".join(head) + comparison.to_markdown() + targets, encoding="utf-8")
    (study_dir / "table.csv").write_text(comparison.to_csv(), encoding="utf-8")
    payload = {**meta, "methods": comparison.runs, "scores": comparison.scores, "ranks": comparison.ranks,
               "agreement": {f"{a} vs {b}": (None if math.isnan(t) else t) for (a, b), t in comparison.agreement.items()}}
    (study_dir / "study.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    draw_figure(comparison, study_dir / "figure.png", title=f"Protocol study on {meta['data']} ({budget} per method)")


def draw_figure(c: Comparison, path: Path, title: str) -> None:
    """Left: scores and ranks as a heat table (rows: methods, columns: protocols). Right: Kendall's tau matrix."""
    from PIL import Image, ImageDraw

    cell_w, cell_h, name_w, top = 104, 30, 200, 70
    n_p = len(c.protocols)
    tau_w = 64
    width = name_w + cell_w * n_p + 60 + tau_w * n_p + 40
    height = top + cell_h * max(len(c.runs), n_p) + 60
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f_title, f, f_small = font(18), font(13), font(11)
    d.text((12, 12), title, fill="black", font=f_title)
    for j, p in enumerate(c.protocols):
        d.text((name_w + j * cell_w + 6, top - 22), p, fill="black", font=f)
    for i, run in enumerate(c.runs):
        y = top + i * cell_h
        d.text((12, y + 8), run, fill="black", font=f)
        for j, p in enumerate(c.protocols):
            vals = [v for v in c.scores[p] if v is not None]
            s, r = c.scores[p][i], c.ranks[p][i]
            x = name_w + j * cell_w
            d.rectangle([x, y, x + cell_w - 2, y + cell_h - 2], fill=score_colour(s, min(vals, default=0), max(vals, default=1)))
            d.text((x + 6, y + 8), "-" if s is None else f"{s:.3f}  #{r}", fill="black", font=f)
    x0 = name_w + cell_w * n_p + 60
    d.text((x0, top - 48), "Kendall's tau", fill="black", font=f)
    for j, p in enumerate(c.protocols):
        short = p.replace("finetune", "ft").replace("linear", "lin")  # "finetune@10%" does not fit a tau cell
        d.text((x0 + j * tau_w + 4, top - 22), short, fill="black", font=f_small)
        d.text((x0 - 56, top + j * cell_h + 8), short, fill="black", font=f_small)
    for i, a in enumerate(c.protocols):
        for j, b in enumerate(c.protocols):
            tau = 1.0 if a == b else c.agreement.get((a, b), c.agreement.get((b, a), float("nan")))
            x, y = x0 + j * tau_w, top + i * cell_h
            colour = (235, 235, 235) if math.isnan(tau) else ((255, int(255 - 150 * -tau), int(255 - 150 * -tau)) if tau < 0 else score_colour(tau, 0, 1))
            d.rectangle([x, y, x + tau_w - 2, y + cell_h - 2], fill=colour)
            d.text((x + 6, y + 8), "-" if math.isnan(tau) else f"{tau:+.2f}", fill="black", font=f)
    d.text((12, height - 26), "darker = higher accuracy within a protocol; #n = rank (1 = best); ft = fine-tuning, lin = linear probe",
           fill=(90, 90, 90), font=f_small)
    img.save(path)
