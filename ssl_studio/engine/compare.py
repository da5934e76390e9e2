"""Comparing runs across protocols: tables, ranks, and how far the protocols agree.

The chapter's warning is that linear probe, k-NN and fine-tuning can rank the
same methods differently; Kendall's tau between every pair of protocols puts a
number on that disagreement.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_studio.engine.run_model import RunModel
from ssl_studio.engine.runs import RunFolder

# protocol name -> (report section, key) of its headline accuracy
HEADLINES = {
    "knn": ("knn", "k20"),
    "linear": ("linear", "top1"),
    "finetune": ("finetune", "top1"),
    "linear@1%": ("fractions", ("fractions", "0.01", "linear")),
    "linear@10%": ("fractions", ("fractions", "0.1", "linear")),
    "finetune@1%": ("fractions", ("fractions", "0.01", "finetune")),
    "finetune@10%": ("fractions", ("fractions", "0.1", "finetune")),
    "zero-shot": ("zeroshot", "top1"),
}


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties counted as in scipy.stats.kendalltau); NaN when either side is constant."""
    if len(a) != len(b):
        raise ValueError(f"kendall_tau needs two lists of the same length, got {len(a)} and {len(b)}")
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom else float("nan")


def ranks(values: list[float | None]) -> list[int | None]:
    """1 = best (highest); ties share the better rank; missing values get no rank."""
    present = sorted((v for v in values if v is not None), reverse=True)
    return [None if v is None else present.index(v) + 1 for v in values]


def _lookup(report: dict[str, Any], section: str, key) -> float | None:
    node: Any = report.get(section)
    for part in (key if isinstance(key, tuple) else (key,)):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


@dataclass
class Comparison:
    runs: list[str]  # a label per run
    protocols: list[str]
    scores: dict[str, list[float | None]]  # protocol -> score per run
    ranks: dict[str, list[int | None]]
    agreement: dict[tuple[str, str], float]  # Kendall's tau per protocol pair (runs scored by both)

    def to_markdown(self) -> str:
        lines = ["| run | " + " | ".join(self.protocols) + " |", "|---|" + "---:|" * len(self.protocols)]
        for i, run in enumerate(self.runs):
            cells = []
            for p in self.protocols:
                s, r = self.scores[p][i], self.ranks[p][i]
                cells.append("–" if s is None else f"{s:.3f} (#{r})")
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
        if self.agreement:
            lines += ["", "| protocols | Kendall's tau |", "|---|---:|"]
            for (a, b), tau in self.agreement.items():
                lines.append(f"| {a} vs {b} | {'–' if math.isnan(tau) else f'{tau:+.2f}'} |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        rows = ["run," + ",".join(f"{p},{p}_rank" for p in self.protocols)]
        for i, run in enumerate(self.runs):
            cells = []
            for p in self.protocols:
                s, r = self.scores[p][i], self.ranks[p][i]
                cells += ["" if s is None else f"{s:.4f}", "" if r is None else str(r)]
            rows.append(f"{run}," + ",".join(cells))
        return "\n".join(rows) + "\n"


def run_label(path: Path) -> str:
    folder = RunFolder(path, create=False)
    try:
        cfg = folder.read_config()
        label = cfg.objective.name + (f" [{', '.join(cfg.ablations)}]" if cfg.ablations else "")
        return f"{label} ({cfg.name})" if cfg.name else label
    except Exception:  # noqa: BLE001 - an unreadable config still gets a label
        return path.name


def compare_runs(paths: list[str | Path], labels: list[str] | None = None) -> Comparison:
    paths = [Path(p) for p in paths]
    labels = labels or [run_label(p) for p in paths]
    reports = [RunModel(p).report() for p in paths]
    scores = {name: [_lookup(r, sec, key) for r in reports] for name, (sec, key) in HEADLINES.items()}
    scores = {k: v for k, v in scores.items() if any(x is not None for x in v)}
    protocols = list(scores)
    agreement = {}
    for a, b in itertools.combinations(protocols, 2):
        both = [(x, y) for x, y in zip(scores[a], scores[b]) if x is not None and y is not None]
        if len(both) >= 2:
            agreement[(a, b)] = kendall_tau([x for x, _ in both], [y for _, y in both])
    return Comparison(labels, protocols, scores, {p: ranks(v) for p, v in scores.items()}, agreement)
