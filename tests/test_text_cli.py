"""The text lab end to end through ``ssl-studio``: train, resume, eval, on the built-in corpus at a tiny size."""

import json

from ssl_studio.cli import main

TINY = ["--data", "text:builtin", "--batch-size", "16", "--set", "data.resolution=16", "--set", "data.limit=400", "--set", "model.width=48",
        "--set", "model.depth=1", "--set", "probe.size=32", "--set", "probe.every=2", "--precision", "float32", "--quiet"]


def test_train_resume_eval_the_masked_lm(tmp_path, capsys):
    assert main(["train", "--objective", "masked-lm", "--steps", "2", "--out", str(tmp_path), *TINY]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (run / "tokenizer.json").is_file()
    report = json.loads((run / "report.json").read_text())
    assert report["perplexity"]["score"] == "left-to-right masked" and report["perplexity"]["perplexity"] > 1
    assert set(report["perplexity"]["scores"]) == {"left-to-right masked", "pseudo"}
    assert 0 <= report["linear"]["top1"] <= 1
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "step" and "token_acc" in e.get("metrics", {}) for e in events)
    # resume: raise the budget, the run goes on from step 2
    config = run / "config.toml"
    config.write_text(config.read_text().replace("steps = 2", "steps = 3"))
    assert main(["resume", str(run), "--quiet"]) == 0
    steps = [e["step"] for e in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()) if e.get("event") == "step"]
    assert steps[-1] == 3 and steps.count(3) == 1
    capsys.readouterr()
    assert main(["eval", str(run), "--protocols", "perplexity"]) == 0
    out = capsys.readouterr().out
    assert "held-out perplexity (left-to-right masked)" in out
    assert main(["eval", str(run), "--protocols", "finetune"]) == 2  # an image protocol, refused in one sentence
    assert "a text run is evaluated by knn, linear, perplexity" in capsys.readouterr().err


def test_the_causal_lm_trains_and_reports_next_token_perplexity(tmp_path):
    assert main(["train", "--objective", "causal-lm", "--steps", "2", "--out", str(tmp_path), *TINY]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads((run / "report.json").read_text())
    assert report["perplexity"]["score"] == "next-token" and report["perplexity"]["unigram"] > 1
