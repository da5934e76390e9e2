"""``python -m ssl_studio`` is the ``ssl-studio`` command: the same entry point, the same output, the same exit status."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from ssl_studio import cli

REPO = Path(__file__).resolve().parents[1]


def python_m(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "ssl_studio", *argv], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_the_console_script_and_the_module_call_the_same_main():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ssl-studio"] == "ssl_studio.cli:main"
    assert "from ssl_studio.cli import main" in (REPO / "ssl_studio" / "__main__.py").read_text()


def test_help_is_the_commands_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width; the same width on both sides
    done = python_m("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ssl-studio")
    assert done.stdout == cli.build_parser().format_help()


def test_a_mistake_exits_2_with_one_sentence_naming_the_field(capsys):
    done = python_m("train", "--steps", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["ssl-studio: budget.steps must be >= 1, got 0"]
    assert "Traceback" not in done.stderr
    assert cli.main(["train", "--steps", "0"]) == 2
    assert capsys.readouterr().err == done.stderr
