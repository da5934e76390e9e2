"""Reliability battery, the command line: one sentence for every mistake, and the exit status of the rule.

0 success; 1 a run or evaluation that started and then failed; 2 a usage, configuration or data mistake;
130 interrupted by Ctrl-C or SIGTERM after a checkpoint.  Every refused start leaves no run folder behind,
and a refused resume or evaluation changes nothing in the run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ssl_studio.cli as cli
from ssl_studio.cli import main

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("one_thread")]

TINY = ["--data", "shapes", "--batch-size", "16", "--set", "data.num_images=64", "--set", "data.resolution=16", "--set", "model.width=8",
        "--set", "probe.size=16", "--set", "probe.every=0", "--set", "probe.visuals_every=0", "--precision", "float32", "--quiet"]
ROOT = Path(__file__).resolve().parents[1]


def run(argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``ssl-studio ARGV`` run in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own exits (--help, a bad flag)
        code = exc.code
    return code, capsys.readouterr().err


def last_sentence(err: str) -> str:
    """The final line on stderr, checked to be one 'ssl-studio: ...' sentence with no traceback anywhere."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("ssl-studio: "), err
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder and its bytes: a refused command must leave it exactly so."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}  # the lock names whichever process last held the folder: not run data


def edit_config(run_dir: Path, old: str, new: str) -> None:
    path = run_dir / "config.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny completed run (2 steps); tests work on copies of it."""
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "--objective", "simclr", "--steps", "2", "--out", str(out), *TINY]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture
def run_copy(trained, tmp_path):
    return Path(shutil.copytree(trained, tmp_path / trained.name))


# -- the rule, documented ---------------------------------------------------------------------------------

def test_help_states_the_exit_status_rule(capsys):
    code, _ = run(["--help"], capsys)
    assert code == 0
    text = cli.build_parser().format_help()
    assert "exit status" in text.lower()
    for code_, words in (("0", "success"), ("1", "failed"), ("2", "mistake"), ("130", "SIGTERM")):
        assert any(line.strip().startswith(code_) and words in line for line in text.splitlines()), (code_, text)


# -- usage and configuration mistakes: 2, one sentence, nothing created -------------------------------------

USAGE_MISTAKES = [
    (["train", "--set", "objective=3"], "objective must be a table"),
    (["train", "--set", "objective.temperature"], "--set takes KEY=VALUE"),
    (["train", "--set", "=0.5"], "--set needs a setting's path"),
    (["train", "--set", "data..resolution=16"], "--set needs a setting's path"),
    (["train", "--steps", "0"], "budget.steps must be >= 1, got 0"),
    (["train", "--minutes", "-1"], "budget.minutes must be > 0, got -1"),
    (["train", "--batch-size", "1"], "batch_size must be >= 2, got 1"),
    (["train", "--set", "batch_size=true"], "batch_size must be an integer, got True"),
    (["train", "--set", "optim.lr=nan"], "optim.lr must be a finite number"),
    (["train", "--set", "data.resolution=1e400"], "data.resolution must be an integer"),
    (["train", "--set", "seed=99999999999999999999999"], "seed must be <= 2147483647"),
    (["train", "--objective", "nope"], "objective.name must be one of"),
    (["train", "--backbone", "vgg"], "model.backbone must be one of convnet, resnet18, vit"),
    (["train", "--preset", "nope"], "--preset 'nope' is not a preset"),
    (["train", "--ablate", "no_such_switch"], "unknown switch 'no_such_switch'"),
    (["train", "--set", "data.colour=red"], "data.colour is not a known setting"),
    (["study", "collapse", "--set", "batch_size"], "--set takes KEY=VALUE"),
    (["train", "--epochs", "0"], "budget.epochs must be > 0, got 0"),
    (["train", "--lr", "-1"], "optim.lr must be > 0, got -1"),
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["eval", "/no/such/run", "--device", "quantum"], "invalid choice: 'quantum'"),
    (["eval", "/no/such/run", "--finetune-epochs", "-1"], "--finetune-epochs: must be a number above 0, got '-1'"),
    (["bench", "--seconds", "nan"], "--seconds: must be a number above 0, got 'nan'"),
    (["resume", "/no/such/run"], "Run folder /no/such/run does not exist"),
    (["compare", "/no/such/run"], "Run folder /no/such/run does not exist"),
]


@pytest.mark.parametrize("argv, fragment", USAGE_MISTAKES, ids=[" ".join(a) for a, _ in USAGE_MISTAKES])
def test_a_usage_mistake_is_one_sentence_exit_2_and_creates_nothing(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would appear here
    out = tmp_path / "out"
    code, err = run(argv + (["--out", out] if argv[0] == "train" else []), capsys)
    assert code == 2, err
    assert fragment in last_sentence(err) and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


CONFIG_FILES = [
    ('objective = "simclr"\n'.encode(), "objective must be a table"),
    (b"data = 3\n", "data must be a table of settings"),
    (b"batch_size = {a = 1}\n", "batch_size must be an integer"),
    (b'[objective]\nname = "simclr"\ntemperature = "warm"\n', "objective.temperature must be a number, got 'warm'"),
    (b'name = "caf\xe9"\n', "is not UTF-8 text (byte 0xe9"),
    (b"[data\n", "is not valid TOML"),
    (b"", "is empty"),
]


@pytest.mark.parametrize("content, fragment", CONFIG_FILES, ids=["objective-string", "section-scalar", "scalar-table", "param-type",
                                                                 "latin-1", "broken-toml", "empty"])
def test_a_bad_config_file_is_one_sentence_naming_it_and_exit_2(content, fragment, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes(content)
    code, err = run(["train", "--config", config, "--out", tmp_path / "out"], capsys)
    assert code == 2 and fragment in last_sentence(err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("below", [False, True], ids=["the-file", "a-folder-inside-it"])
def test_out_pointing_at_a_file_is_refused_naming_it(below, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me", encoding="utf-8")
    out = afile / "runs" if below else afile
    code, err = run(["train", "--steps", "2", "--out", out, *TINY], capsys)
    sentence = last_sentence(err)
    assert code == 2, err
    assert f"out is {out}, which cannot be a folder" in sentence, err
    assert (f"inside {afile}, a file" in sentence) == below, err
    assert afile.read_text(encoding="utf-8") == "keep me" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_non_utf8_byte_in_the_data_path_is_refused_and_leaves_no_temp_file(tmp_path, capsys):
    source = f"folder:{tmp_path}/caf" + b"\xe9".decode("utf-8", "surrogateescape")  # how Python hands over such an argv
    code, err = run(["train", "--data", source, "--steps", "2", "--out", tmp_path / "out"], capsys)
    assert code == 2, err
    sentence = last_sentence(err)
    assert "data.source" in sentence and "0xe9" in sentence and "not UTF-8" in sentence
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*.tmp"))


def test_config_writing_is_atomic_and_removes_its_temp_file_on_error(tmp_path, monkeypatch):
    from ssl_studio.config import RunConfig, load_config, save_config

    path = tmp_path / "config.toml"
    save_config(RunConfig(seed=1), path)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ssl_studio.config.os.replace", full_disk)
    with pytest.raises(OSError):
        save_config(RunConfig(seed=2), path)
    assert path.read_bytes() == before and load_config(path).seed == 1
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


# -- data mistakes: 2 from every command ---------------------------------------------------------------------

def test_a_data_error_at_train_is_exit_2_and_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(["train", *TINY, "--data", f"folder:{tmp_path / 'nothing-here'}", "--steps", "2", "--out", out], capsys)
    assert code == 2 and "nothing-here" in last_sentence(err), err
    assert not out.exists() or list(out.iterdir()) == [], list(out.rglob("*"))


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_data_error_at_eval_or_resume_is_exit_2_and_changes_nothing(command, run_copy, tmp_path, capsys):
    edit_config(run_copy, 'source = "shapes"', f'source = "folder:{tmp_path / "moved-away"}"')
    edit_config(run_copy, "steps = 2", "steps = 4")  # not complete, so resume gets as far as the data
    before = snapshot(run_copy)
    code, err = run([command, run_copy], capsys)
    assert code == 2 and "moved-away" in last_sentence(err), err
    assert snapshot(run_copy) == before


# -- runs that started and failed: 1 -------------------------------------------------------------------------

def test_a_diverged_run_exits_1_naming_the_setting_and_keeps_its_checkpoint(tmp_path, capsys):
    code, err = run(["train", *TINY, "--steps", "30", "--set", "optim.optimizer=sgd", "--lr", "1e12", "--out", tmp_path], capsys)
    assert code == 1 and "optim.lr" in last_sentence(err), err
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_an_internal_error_mid_run_exits_1_pointing_at_error_txt(tmp_path, capsys, monkeypatch):
    def broken_step(self, progress):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("ssl_studio.engine.trainer.Trainer._train_step", broken_step)
    code, err = run(["train", *TINY, "--steps", "2", "--out", tmp_path], capsys)
    assert code == 1 and "error.txt" in last_sentence(err), err
    (run_dir,) = tmp_path.iterdir()
    assert "simulated bug" in (run_dir / "error.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("error, code, fragment", [
    (RuntimeError("simulated bug"), 1, "internal error (RuntimeError: simulated bug)"),
    (OSError(errno.ENOSPC, "No space left on device", "report.json"), 1, "could not use report.json (No space left on device)"),
    (PermissionError(errno.EACCES, "Permission denied", "report.json"), 2, "could not use report.json (Permission denied)"),
], ids=["internal", "disk-full", "permission"])
def test_an_error_inside_eval_is_one_sentence_with_the_rule_s_status(error, code, fragment, run_copy, tmp_path, capsys, monkeypatch):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr("ssl_studio.engine.evaluate.evaluate_run", failing)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where an internal error's traceback is kept
    got, err = run(["eval", run_copy], capsys)
    assert got == code and len(err.strip().splitlines()) == 1, err
    assert fragment in last_sentence(err), err
    kept = list(tmp_path.glob("ssl-studio-error-*.txt"))
    assert (len(kept) == 1 and str(kept[0]) in err and "Traceback" in kept[0].read_text(encoding="utf-8")) if code == 1 and \
        isinstance(error, RuntimeError) else not kept


# -- resume and eval after config.toml was edited: 2, one sentence, nothing changed ----------------------------

@pytest.mark.parametrize("old, new, said", [
    ('name = "simclr"', 'name = "byol"', "was trained with objective simclr but its config.toml now says byol"),
    ("width = 8", "width = 12", "was trained with width 8 but its config.toml now says 12"),
    ('backbone = "convnet"', 'backbone = "resnet18"', "was trained with backbone convnet but its config.toml now says resnet18"),
])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_an_edited_architecture_is_named_not_dumped_and_nothing_changes(command, old, new, said, run_copy, capsys):
    edit_config(run_copy, old, new)
    before = snapshot(run_copy)
    code, err = run([command, run_copy], capsys)
    assert code == 2, err
    sentence = last_sentence(err)
    assert said in sentence and "restore config.toml or start a new run" in sentence and "state_dict" not in err
    assert snapshot(run_copy) == before


def test_an_edited_objective_setting_that_changes_the_network_is_named(run_copy, capsys):
    edit_config(run_copy, 'name = "simclr"', 'name = "simclr"\nproj_dim = 24')
    edit_config(run_copy, "steps = 2", "steps = 4")
    before = snapshot(run_copy)
    code, err = run(["resume", run_copy], capsys)
    assert code == 2, err
    assert "does not fit" in last_sentence(err) and "objective.proj_dim: unset -> 24" in err and "size mismatch" not in err
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage, fragment", [
    (b"", "is empty"), (b"\x00" * 64, "is not valid TOML"), (b'name = "caf\xe9"\n', "is not UTF-8 text"),
    (b'objective = "simclr"\n', "objective must be a table"),
], ids=["empty", "zeroed", "latin-1", "objective-string"])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_damaged_config_toml_is_named_and_nothing_changes(command, damage, fragment, run_copy, capsys):
    (run_copy / "config.toml").write_bytes(damage)
    before = snapshot(run_copy)
    code, err = run([command, run_copy], capsys)
    sentence = last_sentence(err)
    assert code == 2 and fragment in sentence and str(run_copy / "config.toml") in sentence, err
    assert snapshot(run_copy) == before


# -- resume of complete, empty and extended runs ---------------------------------------------------------------

def test_resume_of_a_complete_run_says_so_and_changes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    code, err = run(["resume", run_copy], capsys)
    assert code == 0 and "is already complete (2 steps" in last_sentence(err), err
    assert snapshot(run_copy) == before


def test_resume_after_raising_the_budget_trains_on(run_copy, capsys):
    edit_config(run_copy, "steps = 2", "steps = 3")
    code, err = run(["resume", run_copy, "--quiet"], capsys)
    assert code == 0 and "completed after 3 steps" in err, err


def test_a_failed_resume_never_removes_anything(run_copy, capsys):
    (run_copy / "checkpoints" / "last.pt").unlink()
    edit_config(run_copy, "steps = 2", "steps = 4")
    before = snapshot(run_copy)
    code, err = run(["resume", run_copy], capsys)
    assert code == 2 and "no checkpoint" in last_sentence(err), err
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("protocols, fragment", [("bogus", "unknown protocol 'bogus'"), (",", "--protocols names no protocol")])
def test_eval_with_bad_protocols_is_exit_2(protocols, fragment, run_copy, capsys):
    before = snapshot(run_copy)
    code, err = run(["eval", run_copy, "--protocols", protocols], capsys)
    assert code == 2 and fragment in last_sentence(err), err
    assert snapshot(run_copy) == before


def test_eval_and_compare_on_folders_that_are_not_evaluated_runs(run_copy, tmp_path, capsys):
    code, err = run(["eval", tmp_path], capsys)
    assert code == 2 and "is not a run folder (it has no config.toml)" in last_sentence(err), err
    (run_copy / "report.json").unlink()
    code, err = run(["compare", run_copy], capsys)
    assert code == 2 and "None of these runs has evaluation results yet" in last_sentence(err), err


def test_an_internal_error_at_set_up_keeps_the_folder_with_its_traceback(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug in set-up")

    monkeypatch.setattr("ssl_studio.engine.trainer.build_objective", broken)
    code, err = run(["train", *TINY, "--steps", "2", "--out", tmp_path], capsys)
    assert code == 1 and "error.txt" in last_sentence(err), err
    (run_dir,) = tmp_path.iterdir()
    assert "simulated bug in set-up" in (run_dir / "error.txt").read_text(encoding="utf-8")


# -- interrupted: 130 after a checkpoint -------------------------------------------------------------------------

def _wait_for_a_step(metrics: Path, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it was interrupted: {proc.communicate()}")
        if metrics.is_file() and b'"event":"step"' in metrics.read_bytes():
            return
        time.sleep(0.05)
    raise AssertionError("no step record within the deadline")


def test_sigint_and_sigterm_stop_after_a_checkpoint_and_exit_130(tmp_path):
    from ssl_studio.engine.runs import RunFolder, read_metrics

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / sig.name
        procs[sig] = (out, subprocess.Popen([sys.executable, "-m", "ssl_studio.cli", "train", *TINY, "--minutes", "1", "--out", str(out)],
                                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        deadline = time.monotonic() + 90
        for sig, (out, proc) in procs.items():
            while not list(out.glob("*/metrics.jsonl")) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            (metrics,) = out.glob("*/metrics.jsonl")
            _wait_for_a_step(metrics, proc, deadline)
            proc.send_signal(sig)
        for sig, (out, proc) in procs.items():
            _, err = proc.communicate(timeout=60)
            err = err.decode("utf-8", "replace")
            assert proc.returncode == 130, (sig.name, err)
            assert "Traceback" not in err and "ssl-studio resume" in err.strip().splitlines()[-1]
            (run_dir,) = out.iterdir()
            records, _ = read_metrics(run_dir)
            stopped = [r for r in records if r.get("event") == "finished"]
            assert stopped and stopped[-1]["status"] == "stopped", (sig.name, records[-2:])
            checkpoint = RunFolder(run_dir, create=False).load_checkpoint()
            assert checkpoint["step"] == stopped[-1]["step"] > 0
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- issue 22, second pass: a named pipe where a file should be --------------------------------------------------

def test_a_config_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path, capsys):
    pipe = tmp_path / "run.toml"
    os.mkfifo(pipe)
    code, err = run(["train", "--config", pipe, "--out", tmp_path / "runs", *TINY], capsys)
    assert code == 2 and str(pipe) in last_sentence(err) and "named pipe" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_run_whose_config_toml_is_a_named_pipe_is_named_and_unchanged(command, run_copy, capsys):
    """Once "is not a run folder (it has no config.toml)", which it has."""
    (run_copy / "config.toml").unlink()
    os.mkfifo(run_copy / "config.toml")
    before = snapshot(run_copy)
    code, err = run([command, run_copy], capsys)
    sentence = last_sentence(err)
    assert code == 2 and str(run_copy / "config.toml") in sentence and "named pipe" in sentence, err
    assert snapshot(run_copy) == before


def test_resume_into_a_metrics_pipe_ends_in_one_sentence_keeping_the_checkpoint(run_copy, capsys):
    """The resumed run once blocked forever opening metrics.jsonl (a pipe) to append, and SIGTERM could not end it."""
    edit_config(run_copy, "steps = 2", "steps = 3")
    (run_copy / "metrics.jsonl").unlink()
    os.mkfifo(run_copy / "metrics.jsonl")
    checkpoint = (run_copy / "checkpoints" / "last.pt").read_bytes()
    code, err = run(["resume", run_copy, "--quiet"], capsys)
    sentence = last_sentence(err)
    assert code == 1 and "metrics.jsonl" in sentence and "named pipe" in sentence and "ssl-studio resume" in sentence, err
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == checkpoint


@pytest.mark.parametrize("how", [["--out", ""], ["--set", "out= "]], ids=["--out ''", "--set out=' '"])
def test_an_empty_out_is_refused_not_taken_as_the_current_folder(how, tmp_path, capsys, monkeypatch):
    """An empty ``out`` once made the run folder wherever the command was run (inside a source checkout, here)."""
    monkeypatch.chdir(tmp_path)
    code, err = run(["train", "--objective", "simclr", "--steps", "1", *TINY, *how], capsys)
    assert code == 2 and "out is empty" in last_sentence(err), err
    assert list(tmp_path.iterdir()) == []
