"""Hostile and damaged checkpoints: nothing in a ``last.pt`` runs, and every refusal is one sentence naming the file.

Every path that reads a checkpoint is tried (``resume``, ``eval``, ``model.init_from``);
the window's Evaluate and Start-from go through the same ``RunFolder.load_checkpoint``.
"""

import os
import shutil
import zipfile

import pytest
import torch

from ssl_studio.cli import main
from ssl_studio.engine.runs import RunFolder

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("one_thread")]

TINY = ["--data", "shapes", "--steps", "2", "--batch-size", "16", "--set", "data.num_images=96", "--set", "model.width=8",
        "--set", "probe.size=16", "--set", "probe.visuals_every=0", "--precision", "float32", "--quiet"]


class RunsCode:
    """Unpickling this calls ``os.system``: the classic booby trap."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--objective", "simclr", "--out", str(out), *TINY]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def command(kind, run, tmp_path):
    return {
        "resume": ["resume", str(run), "--quiet"],
        "eval": ["eval", str(run), "--protocols", "knn"],
        "init_from": ["train", "--objective", "byol", "--out", str(tmp_path / "new"), "--set", f"model.init_from={run}", *TINY],
    }[kind]


def refused(argv, capsys, path):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err, err
    return err


@pytest.mark.parametrize("kind", ["resume", "eval", "init_from"])
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(run, tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    state["optimizer"] = RunsCode(marker)
    torch.save(state, ckpt)
    err = refused(command(kind, run, tmp_path), capsys, ckpt)
    assert "could run code" in err and "posix.system" in err
    assert not marker.exists()


def test_a_plain_pickle_in_place_of_the_checkpoint_is_refused(run, tmp_path, capsys):
    import pickle

    marker = tmp_path / "pwned"
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(pickle.dumps({"objective": RunsCode(marker)}))
    refused(command("eval", run, tmp_path), capsys, ckpt)
    assert not marker.exists()


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _zero(p):
    p.write_bytes(b"")


def _zeros(p):
    p.write_bytes(b"\0" * p.stat().st_size)


def _garbage(p):
    p.write_bytes(os.urandom(4096))


def _directory(p):
    p.unlink()
    p.mkdir()


def _missing(p):
    p.unlink()


def _a_list(p):
    torch.save([torch.zeros(3)], p)


def _weights_not_tensors(p):
    torch.save({"format": 1, "step": 3, "objective": {"backbone.w": [1.0, 2.0]}}, p)


def _negative_step(p):
    state = torch.load(p, weights_only=True)
    state["step"] = -5
    torch.save(state, p)


def _zip_of_something_else(p):
    p.unlink()
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")


DAMAGE = [_truncate, _zero, _zeros, _garbage, _directory, _missing, _a_list, _weights_not_tensors, _negative_step,
          _zip_of_something_else]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
@pytest.mark.parametrize("kind", ["resume", "eval"])
def test_a_damaged_checkpoint_is_one_sentence_naming_the_file(run, tmp_path, capsys, damage, kind):
    ckpt = run / "checkpoints" / "last.pt"
    damage(ckpt)
    metrics_before = (run / "metrics.jsonl").read_bytes()
    err = refused(command(kind, run, tmp_path), capsys, ckpt)
    assert "last.pt" in err
    if kind == "eval":
        assert (run / "metrics.jsonl").read_bytes() == metrics_before  # evaluation of a broken run writes nothing


def test_resume_needs_the_optimiser_state_but_eval_does_not(run, tmp_path, capsys):
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer"], state["sampler"]
    torch.save(state, ckpt)
    config = run / "config.toml"  # a longer budget, so that resume has steps left to train (a complete run just says so)
    config.write_text(config.read_text(encoding="utf-8").replace("steps = 2", "steps = 4"), encoding="utf-8")
    err = refused(command("resume", run, tmp_path), capsys, ckpt)
    assert "optimizer" in err and "sampler" in err
    assert main(command("eval", run, tmp_path)) == 0


def test_a_good_checkpoint_still_loads_every_way(run, tmp_path):
    """The control: the safe loader reads what the trainer writes (else every refusal above would pass vacuously)."""
    state = RunFolder(run, create=False).load_checkpoint(resume=True)
    assert state["step"] == 2 and any(k.startswith("backbone.") for k in state["objective"])
    assert main(command("eval", run, tmp_path)) == 0
    assert main(command("init_from", run, tmp_path)) == 0
    assert main(command("resume", run, tmp_path)) == 0


def test_the_windows_evaluate_refuses_a_booby_trapped_checkpoint_in_one_sentence(run, tmp_path, qtbot):
    from ssl_studio.gui.evaluation import EvaluationJob

    marker = tmp_path / "pwned"
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    state["objective_extra"] = {"tokenizer": RunsCode(marker)}
    torch.save(state, ckpt)
    job = EvaluationJob(run, protocols=("knn",))
    with qtbot.waitSignal(job.failed, timeout=30_000) as blocker:
        job.start()
    (message,) = blocker.args
    assert str(ckpt) in message and "could run code" in message and "\n" not in message
    assert not marker.exists()
    qtbot.waitUntil(lambda: job.done, timeout=10_000)


# -- issue 22, second pass: cases of the same classes the first battery did not try --------------------------------

def _pickle_calling(module: str, name: str, arg) -> bytes:
    """A protocol-2 pickle that calls ``module.name(arg)``: a GLOBAL, its argument tuple, REDUCE."""
    import pickle

    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps((arg,), 2)[2:-1] + b"R."


def _with_data_pkl(path, payload: bytes) -> None:
    """Replace the pickle inside the checkpoint's zip archive, keeping its tensors beside it."""
    src = path.with_name("src.pt")
    path.rename(src)
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, payload if info.filename.endswith("data.pkl") else old.read(info))
    src.unlink()


class _SubTensor(torch.Tensor):
    """A tensor subclass: its class must be imported (code) to unpickle it."""


def _subclass_weight(path, marker):
    state = torch.load(path, weights_only=True)
    key = next(iter(state["objective"]))
    state["objective"][key] = state["objective"][key].as_subclass(_SubTensor)
    torch.save(state, path)


HOSTILE = {
    "builtins.eval": lambda p, m: _with_data_pkl(p, _pickle_calling("builtins", "eval", f"open({str(m)!r}, 'w')")),
    "subprocess.Popen": lambda p, m: _with_data_pkl(p, _pickle_calling("subprocess", "Popen", ["touch", str(m)])),
    "nested-torch.load": lambda p, m: _with_data_pkl(p, _pickle_calling("torch", "load", str(m))),
    "tensor-subclass": _subclass_weight,
    "extra-archive-member": lambda p, m: zipfile.ZipFile(p, "a").writestr("../../evil.sh", f"touch {m}"),
}


@pytest.mark.parametrize("how", HOSTILE)
def test_allowed_looking_globals_subclasses_and_archive_games_are_refused(run, tmp_path, capsys, how):
    ckpt, marker = run / "checkpoints" / "last.pt", tmp_path / "ran"
    HOSTILE[how](ckpt, marker)
    err = refused(command("eval", run, tmp_path), capsys, ckpt)
    assert not marker.exists() and not (tmp_path.parent / "evil.sh").exists()
    assert "could run code" in err or "damaged" in err


@pytest.mark.parametrize("what", ["fifo", "dev-zero"])
def test_a_checkpoint_that_is_a_pipe_or_a_device_is_refused_without_waiting(run, tmp_path, capsys, what):
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.unlink()
    os.mkfifo(ckpt) if what == "fifo" else os.symlink("/dev/zero", ckpt)
    err = refused(command("eval", run, tmp_path), capsys, ckpt)  # reading either would wait, or read, forever
    assert ("named pipe" if what == "fifo" else "a device") in err


def _resume_state(**changes):
    def change(state):
        for key, value in changes.items():
            if "." in key:
                outer, inner = key.split(".")
                state[outer] = {**state[outer], inner: value}
            else:
                state[key] = value
    return change


RESUME_DAMAGE = {
    "sampler-not-a-mapping": (_resume_state(sampler="x"), "sampler state"),
    "order-of-other-images": (_resume_state(**{"sampler.order": torch.full((80,), 10**9)}), "does not fit this run"),
    "position-negative": (_resume_state(**{"sampler.position": -5}), "sampler state"),
    "generator-state-short": (_resume_state(**{"sampler.generator": torch.zeros(3, dtype=torch.uint8)}), "does not fit this run"),
    "optimiser-a-string": (_resume_state(optimizer="x"), "optimiser state"),
    "elapsed-nan": (_resume_state(elapsed=float("nan")), "elapsed"),
    "objective-extra-a-string": (_resume_state(objective_extra="x"), "objective_extra"),
    "view-generators-a-string": (_resume_state(view_generators="abc"), "view_generators"),
}


@pytest.mark.parametrize("how", RESUME_DAMAGE)
def test_a_damaged_resume_state_is_refused_before_anything_changes(run, tmp_path, capsys, how):
    """Each of these once ended as exit 1 with a raw exception text ("string indices must be integers") and a failed
    record, or trained on indices out of range; now: one sentence naming last.pt, exit 2, the folder as it was."""
    ckpt = run / "checkpoints" / "last.pt"
    change, words = RESUME_DAMAGE[how]
    state = torch.load(ckpt, weights_only=True)
    change(state)
    torch.save(state, ckpt)
    config = run / "config.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("steps = 2", "steps = 4"), encoding="utf-8")
    before = {p: p.read_bytes() for p in (ckpt, run / "metrics.jsonl", config)}
    err = refused(command("resume", run, tmp_path), capsys, ckpt)
    assert words in err
    assert {p: p.read_bytes() for p in before} == before and not (run / "error.txt").exists()


@pytest.mark.parametrize("kind", ["resume", "eval"])
def test_non_finite_weights_are_refused_not_scored(run, tmp_path, capsys, kind):
    """The trainer never saves NaN weights; eval once scored such a file and printed a normal report."""
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state["objective"].items() if v.is_floating_point())
    state["objective"][key] = torch.full_like(state["objective"][key], float("nan"))
    torch.save(state, ckpt)
    report = (run / "report.json").read_bytes()
    err = refused(command(kind, run, tmp_path), capsys, ckpt)
    assert "NaN or infinite" in err and key in err
    assert (run / "report.json").read_bytes() == report  # nothing scored, nothing overwritten
