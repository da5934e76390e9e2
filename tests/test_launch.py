"""engine/launch.py: the torchrun command the window runs, its environment, its run folder, its exit in one sentence."""

from __future__ import annotations

import os
import sys

import pytest

from ssl_studio.cli import build_parser
from ssl_studio.config import TINY_BATCH, config_from_mapping, load_config
from ssl_studio.engine import launch
from ssl_studio.params import ConfigError

TORCHRUN_KILLED_RANK = """[rank0]: some noise
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
ssl_studio FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_19:53:25
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 1234)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 1234
============================================================
"""


def cfg(**over):
    mapping = {"objective": {"name": "simclr", "temperature": 0.3}, "data": {"source": "shapes", "num_images": 128},
               "model": {"width": 16}, "budget": {"steps": 4}, "batch_size": 16, "seed": 7, "ablations": ["no_projector"]}
    mapping.update(over)
    return config_from_mapping(mapping)


def test_the_command_is_pytorchs_torchrun_training_the_config_into_the_runs_folder(tmp_path):
    cmd = launch.torchrun_command(tmp_path / "job.toml", tmp_path / "runs", 3)
    assert cmd[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "3"
    i = cmd.index("ssl_studio")
    assert cmd[i - 1] == "-m"
    args = build_parser().parse_args(cmd[i + 1:])  # the CLI accepts exactly these flags
    assert (args.command, args.config, args.out) == ("train", str(tmp_path / "job.toml"), str(tmp_path / "runs"))
    assert launch.torchrun_command("c.toml", "r", 2, python="/opt/py")[0] == "/opt/py"


def test_the_job_config_file_is_the_experiment(tmp_path):
    c = cfg()
    path = launch.write_job_config(c, tmp_path)
    assert load_config(path) == c


@pytest.mark.parametrize("batch, processes, ok", [(16, 1, True), (15, 1, True), (16, 2, True), (15, 2, False), (16, 3, False)])
def test_a_batch_that_does_not_split_is_refused_before_launching(batch, processes, ok):
    c = cfg(batch_size=batch)
    if ok:
        launch.check_processes(c, processes)
        return
    with pytest.raises(ConfigError) as err:
        launch.check_processes(c, processes)
    assert err.value.field == "batch_size"
    assert str(batch) in str(err.value) and f"{processes} processes" in str(err.value)


def test_the_tiny_batch_ablation_is_the_batch_that_must_split():
    c = cfg(batch_size=16, ablations=["tiny_batch"])
    if TINY_BATCH % 2 == 0:
        launch.check_processes(c, 2)
    odd = next(n for n in range(2, 9) if TINY_BATCH % n)
    with pytest.raises(ConfigError):
        launch.check_processes(c, odd)


def test_zero_processes_is_refused():
    with pytest.raises(ConfigError) as err:
        launch.check_processes(cfg(), 0)
    assert err.value.field == "processes"


def test_the_job_environment_leaves_any_outer_world_and_runs_this_package():
    base = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_PORT": "1", "PYTHONPATH": f"/x{os.pathsep}/y", "HOME": "/h"}
    env = launch.job_environment(base)
    assert not {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"} & set(env)
    assert env["PYTHONPATH"].split(os.pathsep) == [launch.package_root(), "/x", "/y"]
    assert os.path.isdir(os.path.join(launch.package_root(), "ssl_studio"))
    assert env["HOME"] == "/h" and int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]) > 30
    assert base["RANK"] == "3"  # the window's own environment is untouched


def test_the_run_folder_line_names_the_folder():
    assert launch.run_folder_in("run folder: /r/20260101-000000-simclr-shapes\n") == "/r/20260101-000000-simclr-shapes"
    assert launch.run_folder_in("simclr on shapes · batch 16") is None
    assert launch.run_folder_in("run folder: ") is None


def test_the_new_run_folder_is_found_among_older_and_foreign_ones(tmp_path):
    out = tmp_path / "runs"
    (out / "20250101-000000-simclr-shapes").mkdir(parents=True)
    before = launch.run_folders(out)
    assert launch.find_new_run(out, before, cfg()) is None
    (out / "20260101-000000-byol-shapes").mkdir()  # another objective's run started meanwhile
    (out / "notes").mkdir()
    assert launch.find_new_run(out, before, cfg()) is None
    (out / "20260101-000001-simclr-shapes").mkdir()
    assert launch.find_new_run(out, before, cfg()) == out / "20260101-000001-simclr-shapes"
    (out / "20260101-000001-simclr-shapes-2").mkdir()  # two candidates: the job's own line must decide
    assert launch.find_new_run(out, before, cfg()) is None
    assert launch.run_folders(tmp_path / "missing") == set()


def test_the_last_ssl_studio_line_is_the_sentence():
    output = ("[rank0]: warning\nssl-studio: first\nTraceback (most recent call last):\n  File x\n"
              "[rank0]:ssl-studio: batch_size 15 images do not split evenly over the 2 processes\nChildFailedError\n")
    assert launch.last_sentence(output) == "batch_size 15 images do not split evenly over the 2 processes"
    assert launch.last_sentence("nothing here\n") is None
    assert launch.describe_exit(1, output, 2) == "batch_size 15 images do not split evenly over the 2 processes."


def test_a_python_without_torchrun_is_named():
    text = launch.describe_exit(1, "/usr/bin/python3: No module named torch.distributed.run\n", 2)
    assert "torch.distributed.run" in text and "Processes to 1" in text


def test_a_killed_rank_is_named_with_its_signal():
    text = launch.describe_exit(1, TORCHRUN_KILLED_RANK, 2)
    assert "rank 1" in text and "SIGKILL" in text and "resume" in text


def test_a_program_that_cannot_start_is_one_sentence():
    text = launch.describe_exit(None, "", 2, start_error="No such file or directory")
    assert "No such file or directory" in text and "Processes to 1" in text


@pytest.mark.parametrize("code, word", [(0, "without a finished record"), (3, "status 3"), (-9, "SIGKILL")])
def test_other_endings_are_one_sentence(code, word):
    text = launch.describe_exit(code, "noise\n", 2)
    assert word in text and text.count(". ") == 0 and text.endswith(".") and "\n" not in text


def test_a_torchrun_killed_by_a_signal_points_to_the_checkpoint():
    text = launch.describe_exit(None, "", 2, crashed=True)
    assert "killed" in text and "resume" in text and "Could not start" not in text
