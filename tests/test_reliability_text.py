"""Hostile and malformed text input: one sentence each, naming the file or field, exit status 2, nothing written."""

import pytest

from ssl_studio.cli import main
from ssl_studio.data.imageset import DataError
from ssl_studio.data.text import load_textset, read_text_path

pytestmark = pytest.mark.reliability

ENGLISH = "The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire. " * 30


def _classes(root, **files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return root


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"),
    (b"   \n\n  \t", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
    ("caf\u00e9 au lait".encode("latin-1"), "is not UTF-8 text (byte 3"),
])
def test_a_bad_file_is_refused_naming_it(tmp_path, content, fragment):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_text_path(bad)
    assert fragment in err.value.message and str(bad) in err.value.message
    # the same file inside a class folder is refused too, naming it
    root = _classes(tmp_path / "corpus", **{"a/good.txt": ENGLISH, "b/good.txt": ENGLISH})
    (root / "b" / "bad.txt").write_bytes(content)
    with pytest.raises(DataError) as err:
        read_text_path(root)
    assert fragment in err.value.message and "bad.txt" in err.value.message


def test_a_single_class_folder_is_refused(tmp_path):
    root = _classes(tmp_path / "corpus", **{"only/a.txt": ENGLISH, "only/b.txt": ENGLISH})
    with pytest.raises(DataError, match=r"has only one class folder \(only\)"):
        read_text_path(root)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty_dir").mkdir() or p / "empty_dir", "holds no .txt files"),
    (lambda p: (p / "tiny.txt").write_text("A few words only.") and p / "tiny.txt", "at least 8 of each are needed"),
])
def test_too_little_or_no_text_is_refused(tmp_path, make, fragment):
    with pytest.raises(DataError, match=fragment):
        load_textset(f"text:{make(tmp_path)}", 16, 0.2, seed=0)


def test_a_folder_of_classes_gives_labels_and_the_split_is_seeded(tmp_path):
    root = _classes(tmp_path / "corpus", **{"animals/a.txt": ENGLISH, "weather/b.txt": ("Rain and wind and cold grey clouds. " * 60)})
    one, two = load_textset(f"text:{root}", 16, 0.25, seed=1), load_textset(f"text:{root}", 16, 0.25, seed=1)
    assert one.class_names == ["animals", "weather"] and set(one.labels.tolist()) == {0, 1}
    assert (one.images == two.images).all() and one.tokenizer == two.tokenizer
    assert set(one.labels[one.val_index].tolist()) == {0, 1}  # the held-out probe set has both classes


def exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv, fragment", [
    (["--objective", "simclr", "--data", "text:builtin"], "SimCLR trains on images but data.source is 'text:builtin'"),
    (["--objective", "masked-lm", "--data", "shapes"], "Masked LM trains on text"),
    (["--objective", "causal-lm", "--data", "text:"], "without a path"),
    (["--objective", "causal-lm", "--data", "text:builtin", "--set", "model.width=50"], "model.width must be a multiple of 48"),
    (["--objective", "causal-lm", "--data", "text:builtin", "--set", "data.val_fraction=0"], "data.val_fraction is 0"),
])
def test_mismatched_or_malformed_text_settings_are_one_sentence_and_exit_2(tmp_path, argv, fragment, capsys):
    assert exit_code(["train", "--out", str(tmp_path), "--steps", "1", "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # a refused start leaves nothing behind


def test_text_chars_tokenises_by_character_and_a_single_file_has_no_labels(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text(ENGLISH)
    data = load_textset(f"text-chars:{path}", 16, 0.2, seed=0)
    assert data.tokenizer.kind == "chars" and data.labels is None
    assert data.tokenizer.decode(data.images[0].tolist()) in ENGLISH.strip()


@pytest.mark.parametrize("what, fragment", [("fifo", "is a named pipe (FIFO), not a text file"),
                                            ("dev-zero", "is a device, not a text file")])
@pytest.mark.parametrize("where", ["the-source", "inside-a-class-folder"])
def test_a_pipe_or_device_named_like_text_is_refused_or_skipped_never_read(tmp_path, what, fragment, where):
    """A named pipe waited for a writer forever (as the source itself: a NotADirectoryError traceback); a link to
    /dev/zero called .txt was read until memory ran out.  As the source it is refused; inside a folder it is
    skipped, never opened, and named in a note, as in an image folder."""
    import os
    import threading

    root = _classes(tmp_path / "corpus", **{"a/good.txt": ENGLISH, "b/good.txt": ENGLISH})
    special = tmp_path / "pipe.txt" if where == "the-source" else root / "b" / "odd.txt"
    os.mkfifo(special) if what == "fifo" else os.symlink("/dev/zero", special)
    box = {}

    def read():
        try:
            box["read"] = read_text_path(special if where == "the-source" else root)
        except DataError as exc:
            box["error"] = exc

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "still reading after 20 s"
    if where == "the-source":
        assert fragment in box["error"].message and str(special) in box["error"].message
    else:
        passages, labels, names, notes = box["read"]
        assert names == ["a", "b"] and sorted(set(labels)) == [0, 1] and "b/odd.txt" in " ".join(notes)


def test_links_out_of_a_text_folder_or_in_a_loop_are_not_followed_and_are_counted(tmp_path):
    """The image scan's rule for text folders too: a .txt link to a file outside is not read (its text would
    leak into the probe set), a link to .. is not walked again and again, and the notes say how many were skipped."""
    import os

    root = _classes(tmp_path / "corpus", **{"a/good.txt": ENGLISH, "b/good.txt": ENGLISH})
    secret = tmp_path / "secret.txt"
    secret.write_text("Private words that must never be read. " * 20)
    os.symlink(secret, root / "a" / "leak.txt")
    os.symlink("..", root / "b" / "loop")
    passages, labels, names, notes = read_text_path(root)
    clean, _, _, _ = read_text_path(_classes(tmp_path / "clean", **{"a/good.txt": ENGLISH, "b/good.txt": ENGLISH}))
    assert names == ["a", "b"] and sorted(set(labels)) == [0, 1] and passages == clean  # nothing read twice, nothing from outside
    assert "2 links were not followed" in " ".join(notes) and "a/leak.txt" in " ".join(notes)
    flat = _classes(tmp_path / "flat", **{"one.txt": ENGLISH})
    os.symlink(".", flat / "again")
    os.symlink(secret, flat / "leak.txt")
    passages, labels, names, notes = read_text_path(flat)
    assert names is None and passages == clean[:len(passages)] and len(passages) == len(clean) // 2 and "2 links were not followed" in " ".join(notes)
