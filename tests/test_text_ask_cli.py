"""``ssl-studio ask`` and the words of a text run on the command line, on two tiny runs over a .txt file of the test's own."""

import pytest

from ssl_studio.cli import main
from text_runs import TINY, train_causal_and_masked, write_own_text


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(causal run, masked run, their runs folder) trained on an unlabelled .txt file."""
    return train_causal_and_masked(tmp_path_factory.mktemp("ask"))


def test_one_run_is_answered_with_its_partner_found_beside_it(runs, capsys):
    causal, masked, _ = runs
    assert main(["ask", str(causal), "read the file and", "--temperature", "0", "--tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and f"causal LM ({causal.name})" in out and f"masked LM (masks appended, filled left to right) ({masked.name})" in out
    assert main(["ask", str(masked), "read the [MASK] and write"]) == 0
    out = capsys.readouterr().out
    assert "top fills with their probability" in out and "ranked by the sentence's log-likelihood" in out


def test_alone_or_without_a_partner_only_the_given_run_answers(runs, capsys, tmp_path):
    causal, _, _ = runs
    assert main(["ask", str(causal), "read the file", "--alone"]) == 0
    assert "masked LM" not in capsys.readouterr().out
    lonely = tmp_path / causal.name
    import shutil

    shutil.copytree(causal, lonely)
    assert main(["ask", str(lonely), "read the file"]) == 0
    captured = capsys.readouterr()
    assert "No finished masked-lm run on text:" in captured.err and "causal LM" in captured.out


@pytest.mark.parametrize("args, fragment", [
    (["{causal}"], "takes a text run's folder and then the text"),
    (["{causal}", "{masked}", "{causal}", "x"], "one or two run folders and then one text"),
    (["{causal}", "{causal}", "read"], "Both runs are causal-lm runs"),
    (["{causal}", "{masked}"], "is a run folder, but it should be the text"),
    (["{causal}", "read the café"], "never saw ('é')"),
    (["{causal}", "   "], "is empty"),
    (["{causal}", "read", "--temperature", "-1"], "--temperature must be 0 (greedy) or above"),
    (["{root}/nothing", "read"], "does not exist"),
    (["{root}", "read"], "is not a run folder"),
])
def test_what_ask_refuses_is_one_sentence_and_exit_2(runs, capsys, args, fragment):
    causal, masked, root = runs
    argv = ["ask", *(a.format(causal=causal, masked=masked, root=root) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_image_run_is_not_asked(tmp_path, capsys):
    run = tmp_path / "simclr-run"
    run.mkdir()
    (run / "config.toml").write_text('[objective]\nname = "simclr"\n[data]\nsource = "shapes"\n')
    assert main(["ask", str(run), "hello"]) == 2
    assert "is a simclr run on shapes, not a text run" in capsys.readouterr().err


def test_an_unlabelled_text_run_says_token_windows_and_is_evaluated_by_perplexity(runs, capsys):
    causal, _, _ = runs
    capsys.readouterr()
    assert main(["resume", str(causal)]) == 0  # complete: nothing to train, but it reads back fine
    assert main(["eval", str(causal)]) == 0
    captured = capsys.readouterr()
    assert "held-out perplexity (next-token)" in captured.out
    assert "knn and linear left out: this run's text has no labels" in captured.err
    assert main(["eval", str(causal), "--protocols", "knn"]) == 2
    err = capsys.readouterr().err
    assert "need labels" in err and "evaluate it by perplexity" in err and "Traceback" not in err


def test_the_start_line_of_a_text_run_counts_token_windows(tmp_path, capsys):
    text = write_own_text(tmp_path / "t.txt", sentences=400, capitalise=False)
    args = [a for a in TINY if a != "--quiet"]
    assert main(["train", "--objective", "causal-lm", "--data", f"text:{text}", "--out", str(tmp_path / "runs"), *args]) == 0
    err = capsys.readouterr().err
    assert "training token windows)" in err and "training images" not in err and "windows/s" in err


def test_a_run_without_a_checkpoint_is_refused_and_a_damaged_vocabulary_is_learned_again(runs, capsys, tmp_path):
    import shutil

    causal, _, _ = runs
    bare = tmp_path / "bare"
    shutil.copytree(causal, bare)
    (bare / "checkpoints" / "last.pt").unlink()
    assert main(["ask", str(bare), "read the file", "--alone"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint" in err and err.count("\n") == 1
    damaged = tmp_path / "damaged"
    shutil.copytree(causal, damaged)
    (damaged / "tokenizer.json").write_text("{not json")
    assert main(["ask", str(damaged), "read the file", "--alone", "--temperature", "0"]) == 0  # learned from its text again
    damaged_out = capsys.readouterr().out
    assert main(["ask", str(causal), "read the file", "--alone", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.replace(causal.name, "") == damaged_out.replace(damaged.name, "")  # the same answer


@pytest.mark.reliability
def test_a_named_pipe_in_place_of_tokenizer_json_never_hangs_ask(runs, capsys, tmp_path):
    """Opening a FIFO waits for a writer forever: the run's vocabulary is learned again from its text instead."""
    import os
    import shutil

    causal, masked, _ = runs
    for run in (causal, masked):
        copy = tmp_path / run.name
        shutil.copytree(run, copy)
        (copy / "tokenizer.json").unlink()
        os.mkfifo(copy / "tokenizer.json")
    assert main(["ask", str(tmp_path / causal.name), "read the file", "--temperature", "0", "--tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert f"causal LM ({causal.name})" in out and f"({masked.name})" not in out  # a partner without a readable vocabulary is not offered
