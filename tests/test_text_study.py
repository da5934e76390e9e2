"""``ssl-studio study text`` at a tiny size: both objectives from the same weights, the table, the figure, the verdict."""

import json

from ssl_studio.cli import main
from ssl_studio.studies.text import TextRow, verdict


def test_the_text_study_writes_its_table_figure_and_verdict(tmp_path, capsys):
    argv = ["study", "text", "--steps", "2", "--out", str(tmp_path)]
    for setting in ("model.width=48", "model.depth=1", "data.limit=200", "batch_size=16", "probe.size=32", "data.resolution=16",
                    "precision=float32"):
        argv += ["--set", setting]
    assert main(argv) == 0
    (study,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"table.md", "table.csv", "figure.png", "study.json"} <= {p.name for p in study.iterdir()}
    data = json.loads((study / "study.json").read_text())
    rows = {(r["objective"], r["trained"]): r for r in data["rows"]}
    assert set(rows) == {("causal-lm", True), ("masked-lm", True), ("causal-lm", False), ("masked-lm", False)}
    assert rows[("masked-lm", True)]["score"] == "left-to-right masked" and rows[("causal-lm", True)]["score"] == "next-token"
    assert data["meta"]["verdict"]["complete"] and "Generation: held-out perplexity" in capsys.readouterr().out


def test_the_verdict_names_the_winner_of_each_side():
    rows = [TextRow("Causal LM", "causal-lm", True, perplexity=50.0, linear_top1=0.60),
            TextRow("Masked LM", "masked-lm", True, perplexity=80.0, linear_top1=0.70)]
    v = verdict(rows)
    assert v["causal_wins_generation"] and v["masked_wins_understanding"]
    assert v["generation_gap"] == 30.0 and abs(v["understanding_gap"] - 0.10) < 1e-9
    assert verdict(rows[:1]) == {"complete": False}
