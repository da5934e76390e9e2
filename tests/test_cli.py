"""``ssl-studio`` end to end on tiny budgets, and its one-sentence errors."""

import pytest

from ssl_studio.cli import main

TINY = ["--data", "shapes", "--steps", "4", "--batch-size", "16", "--set", "data.num_images=128", "--set", "model.width=16",
        "--set", "probe.size=32", "--set", "probe.every=2", "--precision", "float32", "--quiet"]


def test_train_eval_resume_end_to_end(tmp_path, capsys):
    assert main(["train", "--objective", "simclr", "--out", str(tmp_path), *TINY]) == 0
    err = capsys.readouterr().err
    assert "k-NN@20" in err and "effective rank" in err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"config.toml", "metrics.jsonl", "report.json", "snapshots", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "k-NN (k=5 / k=20)" in out and "linear probe" in out and "fine-tuning" in out
    assert main(["resume", str(run), "--quiet"]) == 0  # already complete: finishes at once
    # the written config reproduces the run
    assert main(["train", "--config", str(run / "config.toml"), "--out", str(tmp_path / "again"), "--quiet"]) == 0


def exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--objective", "nope"], "objective.name must be one of"),
    (["train", "--set", "objective.temperature=-1"], "objective.temperature must be > 0, got -1"),
    (["train", "--batch-size", "zero"], "invalid int value"),
    (["train", "--ablate", "no_predictor"], "does not apply to simclr"),
    (["train", "--config", "/no/such/file.toml"], "does not exist"),
    (["eval", "/no/such/run"], "Run folder /no/such/run does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_sentence_and_exit_2(argv, fragment, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
