"""Reliability battery, data class: hostile and malformed images, folders, captions and CIFAR files.

Each case asserts its outcome: the exact images and classes read, or one sentence naming the
file (or field) and what to do.  Most cases stay at the folder-scan / load level; two tiny
end-to-end runs cover the refusals of evaluation on one class.
"""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_studio.config import DataConfig, config_from_mapping
from ssl_studio.data import DataError, load_imageset
from ssl_studio.data.folder import MIN_SIDE, load_folder
from ssl_studio.engine.build import MIN_HELD_OUT_IMAGES, MIN_TRAIN_IMAGES, load_data
from ssl_studio.params import ConfigError

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("one_thread")]

links = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="symbolic links need a POSIX file system")


def png(path: Path, size: int = 12, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def images(folder: Path, n: int, size: int = 12, start: int = 0) -> Path:
    for i in range(start, start + n):
        png(folder / f"{i}.png", size, seed=i)
    return folder


def one_sentence(err: pytest.ExceptionInfo, *needles: str) -> str:
    """The refusal is a ConfigError (DataError is one) of one line naming each needle; its text prints as UTF-8."""
    text = str(err.value)
    assert isinstance(err.value, ConfigError), type(err.value)
    assert "\n" not in text and "Traceback" not in text
    text.encode("utf-8")
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def cfg_for(source: str, objective: str = "simclr", **data) -> object:
    return config_from_mapping({"objective": {"name": objective}, "data": {"source": source, "resolution": 16, **data}})


# ---------------------------------------------------------------------------
# links (issue 22, item 2)
# ---------------------------------------------------------------------------

@links
def test_a_link_to_the_parent_inside_a_class_folder_is_not_followed(tmp_path):
    root = tmp_path / "data"
    images(root / "cat", 10)
    images(root / "dog", 10)
    os.symlink("..", root / "cat" / "up")
    raw = load_folder(root, resolution=16)
    assert len(raw) == 20 and raw.class_names == ["cat", "dog"]
    assert torch.bincount(raw.labels).tolist() == [10, 10]
    assert raw.skipped_links == 1 and raw.skipped_link_examples == ["cat/up"]
    assert any("1 link was not followed" in n and "cat/up" in n for n in raw.notes)


@links
def test_a_link_to_itself_in_a_flat_folder_is_not_a_class(tmp_path):
    images(tmp_path, 5)
    os.symlink(".", tmp_path / "self")
    raw = load_folder(tmp_path, resolution=16)
    assert len(raw) == 5 and raw.labels is None and raw.class_names is None
    assert raw.skipped_links == 1 and raw.skipped_link_examples == ["self"]


@links
def test_links_leading_out_of_the_folder_are_skipped(tmp_path):
    outside = images(tmp_path / "elsewhere", 7)
    root = tmp_path / "data"
    images(root / "cat", 3)
    images(root / "dog", 3)
    os.symlink(outside, root / "bird")  # would be a class of 7
    os.symlink(outside, root / "cat" / "more")  # would add 7 cats
    os.symlink(outside / "0.png", root / "dog" / "far.png")
    raw = load_folder(root, resolution=16)
    assert len(raw) == 6 and raw.class_names == ["cat", "dog"]
    assert raw.skipped_links == 3
    assert sorted(raw.skipped_link_examples) == ["bird", "cat/more", "dog/far.png"]


@links
def test_a_link_to_a_sibling_class_is_not_a_second_copy(tmp_path):
    images(tmp_path / "cat", 4)
    images(tmp_path / "dog", 4, start=4)
    os.symlink("cat", tmp_path / "cat2")
    os.symlink("../cat", tmp_path / "dog" / "cats")  # order does not matter: real folders come first
    os.symlink("dog", tmp_path / "a-dog-link")  # sorts before "dog"
    raw = load_folder(tmp_path, resolution=16)
    assert len(raw) == 8 and raw.class_names == ["cat", "dog"]
    assert torch.bincount(raw.labels).tolist() == [4, 4]
    assert raw.skipped_links == 3


@links
def test_file_links_inside_the_folder_are_read_once(tmp_path):
    """A link to an image already read is skipped (no duplicate, no train/test leak); so is a hard link."""
    images(tmp_path / "train" / "cat", 3)
    images(tmp_path / "train" / "dog", 3, start=3)
    images(tmp_path / "test" / "cat", 2, start=6)
    images(tmp_path / "test" / "dog", 2, start=8)
    os.symlink("../../train/cat/0.png", tmp_path / "test" / "cat" / "leak.png")
    os.link(tmp_path / "train" / "dog" / "3.png", tmp_path / "test" / "dog" / "hard.png")
    raw = load_folder(tmp_path, resolution=16)
    assert len(raw) == 10 and int(raw.is_val.sum()) == 4
    assert raw.skipped_links == 2 and sorted(raw.skipped_link_examples) == ["test/cat/leak.png", "test/dog/hard.png"]


@links
def test_links_into_a_hidden_pool_inside_the_folder_are_followed(tmp_path):
    """Documented: a hidden folder is never scanned itself, so links into it are the only way it is read."""
    images(tmp_path / ".pool" / "cats", 4)
    images(tmp_path / "dog", 3, start=4)
    os.symlink(".pool/cats", tmp_path / "cat")
    os.symlink("../.pool/cats/0.png", tmp_path / "dog" / "odd.png")  # already read through "cat": skipped
    os.symlink("missing.png", tmp_path / "dog" / "broken.png")
    raw = load_folder(tmp_path, resolution=16)
    assert raw.class_names == ["cat", "dog"] and torch.bincount(raw.labels).tolist() == [4, 3]
    assert sorted(raw.skipped_link_examples) == ["dog/broken.png", "dog/odd.png"]


@links
def test_a_linked_root_reads_as_the_folder_it_names(tmp_path):
    """The root itself may be a link (~/data -> /mnt/data): "inside the folder" means inside what it resolves to."""
    real = tmp_path / "real"
    images(real / "cat", 2)
    images(real / "dog", 2, start=2)
    os.symlink("../cat/0.png", real / "dog" / "same.png")
    os.symlink(real, tmp_path / "alias")
    raw = load_folder(tmp_path / "alias", resolution=8)
    assert len(raw) == 4 and raw.class_names == ["cat", "dog"] and raw.skipped_link_examples == ["dog/same.png"]


@links
def test_a_split_part_linked_out_of_the_folder_is_refused(tmp_path):
    images(tmp_path / "elsewhere" / "a", 2)
    root = tmp_path / "data"
    images(root / "test" / "a", 2)
    os.symlink(tmp_path / "elsewhere", root / "train")
    with pytest.raises(DataError) as err:
        load_folder(root)
    one_sentence(err, "train/ is a link", "not followed")


@links
def test_a_folder_of_nothing_but_a_loop_is_a_clear_error(tmp_path):
    os.symlink(".", tmp_path / "again")
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, str(tmp_path), "no image files", "1 link")


# ---------------------------------------------------------------------------
# silent nonsense (item 5): captions, one class, train/test classes, too little data
# ---------------------------------------------------------------------------

def test_captions_csv_with_an_unclosed_quote_is_refused_naming_the_line(tmp_path):
    images(tmp_path, 4)
    (tmp_path / "captions.csv").write_text('file,caption\n0.png,a red square\n1.png,"a blue\n2.png,a dog\n3.png,a cow\n')
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, str(tmp_path / "captions.csv"), "line 3", "close the quote")


def test_captions_csv_naming_mostly_missing_files_is_refused(tmp_path):
    images(tmp_path, 4)
    (tmp_path / "captions.csv").write_text("file,caption\nimgs/0.png,a\nimgs/1.png,b\nimgs/2.png,c\n3.png,d\n")
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, "captions.csv", "3 files (of 4)", "imgs/0.png", "relative to")


def test_captions_csv_a_few_unmatched_rows_are_named_and_commas_kept(tmp_path):
    images(tmp_path, 4)
    (tmp_path / "captions.csv").write_text("file,caption\n0.png,a cat, sitting\n1.png,b\n2.png,\nghost.png,d\n")
    raw = load_folder(tmp_path, resolution=16)
    assert raw.captions == ["a cat, sitting", "b", "", ""]
    assert any("1 rows of" in n and "ghost.png" in n for n in raw.notes)


def test_clip_refuses_a_folder_where_most_images_have_no_caption(tmp_path):
    images(tmp_path, 24)
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"caption {i}")
    with pytest.raises(ConfigError) as err:
        load_data(cfg_for(f"folder:{tmp_path}", "clip"))
    one_sentence(err, "only 3 of its 24 images", "captions.csv")


@pytest.fixture
def one_class(tmp_path) -> Path:
    return images(tmp_path / "one" / "cat", 20)


def test_one_class_trains_label_free_with_a_note(one_class):
    data = load_data(cfg_for(f"folder:{one_class.parent}"))
    assert data.labels is None and data.class_names is None and data.only_class == "cat"
    assert "only one class (cat)" in data.describe()


@pytest.mark.parametrize("objective, needle", [("supervised", "learns to tell classes apart"), ("clip", "needs captions or at least 2")])
def test_one_class_is_refused_where_labels_are_learnt_from(one_class, objective, needle):
    with pytest.raises(ConfigError) as err:
        load_data(cfg_for(f"folder:{one_class.parent}", objective))
    one_sentence(err, "only one class (cat)", needle)


def test_one_class_run_is_never_scored_and_eval_refuses(one_class, tmp_path, capsys):
    """End to end: no 1.000 accuracy in the run's summary, and eval by label protocols (fractions included) exits 2."""
    import json

    from ssl_studio.cli import main

    out = tmp_path / "runs"
    tiny = ["--steps", "2", "--batch-size", "8", "--set", "model.width=8", "--set", "probe.size=16", "--set", "probe.every=0",
            "--set", "data.resolution=16", "--precision", "float32", "--device", "cpu", "--quiet"]
    assert main(["train", "--objective", "simclr", "--data", f"folder:{one_class.parent}", "--out", str(out), *tiny]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else {}
    assert "knn" not in report and "linear" not in report
    capsys.readouterr()
    for protocols in ("fractions", "knn,linear,finetune"):
        assert main(["eval", str(run), "--protocols", protocols]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
        assert "only one class (cat)" in err and protocols.split(",")[0] in err


def test_a_test_class_missing_from_train_is_refused(tmp_path):
    images(tmp_path / "train" / "a", 3)
    images(tmp_path / "train" / "b", 3, start=3)
    images(tmp_path / "test" / "a", 2, start=6)
    images(tmp_path / "test" / "zebra", 2, start=8)
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, "test/", "train/", "(zebra)")


def test_three_images_are_too_few_to_train_on(tmp_path):
    images(tmp_path, 3)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_for(f"folder:{tmp_path}"))
    one_sentence(err, "only 2 training images", f"at least {MIN_TRAIN_IMAGES}")


def test_one_held_out_image_is_too_few_to_probe(tmp_path):
    images(tmp_path, 20)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_for(f"folder:{tmp_path}", val_fraction=0.05))
    assert err.value.field == "data.val_fraction"
    one_sentence(err, "only 1 held-out image", f"at least {MIN_HELD_OUT_IMAGES}")


def test_only_one_pixel_images_are_refused(tmp_path):
    for i in range(3):
        png(tmp_path / f"{i}.png", size=1, seed=i)
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, "none of its 3 files", f"{MIN_SIDE}×{MIN_SIDE}", "0.png")


def test_label_protocols_survive_a_single_training_row():
    """The 1 % fraction of a tiny class can be one image: standardising it must not give NaN (the fractions traceback)."""
    from ssl_studio.engine.evaluate import linear_protocol, standardise

    tr, va = standardise(torch.randn(1, 5), torch.randn(3, 5))
    assert torch.isfinite(tr).all() and torch.isfinite(va).all()
    result = linear_protocol(torch.randn(1, 5), torch.tensor([0]), torch.randn(3, 5), torch.tensor([0, 1, 0]), num_classes=2)
    assert 0.0 <= result["top1"] <= 1.0


# ---------------------------------------------------------------------------
# raw exception texts (item 7): bombs, names, encodings, modes, odd files
# ---------------------------------------------------------------------------

def _png_header_only(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("pixels_limit", [200, 100], ids=["bomb-warning", "bomb-error"])
def test_decompression_bombs_are_skipped_by_name_without_a_raw_warning(tmp_path, monkeypatch, pixels_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels_limit)  # 16×16 = 256 px: over the limit (warning) or twice it (error)
    images(tmp_path, 3, size=8)
    png(tmp_path / "huge.png", size=16)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        raw = load_folder(tmp_path, resolution=8)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(raw) == 3 and raw.skipped == 1 and raw.skipped_examples == ["huge.png"]
    assert any("decompression-bomb" in n and "huge.png" in n for n in raw.notes)


def test_a_header_claiming_huge_dimensions_is_skipped_by_name(tmp_path):
    images(tmp_path, 2)
    _png_header_only(tmp_path / "giant.png", 100_000, 100_000)
    raw = load_folder(tmp_path, resolution=8)
    assert len(raw) == 2 and raw.skipped_examples == ["giant.png"]
    assert any("giant.png" in n for n in raw.notes)


def test_unreadable_files_are_named_in_the_notes(tmp_path):
    images(tmp_path, 2)
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "c.gif").write_text("GIF? no")
    raw = load_folder(tmp_path, resolution=8)
    assert len(raw) == 2 and raw.skipped == 3 and raw.skipped_examples == ["a.jpg", "b.png", "c.gif"]
    assert "3 unreadable files were skipped (corrupt, empty or not an image): a.jpg, b.png, c.gif." in raw.notes


def test_a_folder_of_only_unreadable_files_is_refused_naming_them(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "y.jpg").write_text("text")
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, "none of its 2 files", "2 unreadable", "x.png")


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        load_folder(tmp_path)
    one_sentence(err, str(tmp_path), "holds no image files")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "1", "F"])
def test_every_image_mode_loads(tmp_path, mode):
    rng = np.random.default_rng(1)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (10, 10), dtype=np.uint16))
    elif mode in ("I", "F"):
        im = Image.fromarray(rng.integers(0, 65535, (10, 10)).astype(np.int32 if mode == "I" else np.float32), mode)
    else:
        im = Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).convert(mode)
    im.save(tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK", "PA") else "x.png"))
    raw = load_folder(tmp_path, resolution=8)
    assert len(raw) == 1 and raw.skipped == 0 and raw.images.shape == (1, 3, 8, 8)


def test_names_with_spaces_and_unicode(tmp_path):
    images(tmp_path / "chat noir", 2)
    png(tmp_path / "chat noir" / "été 1.png", seed=9)
    images(tmp_path / "犬", 2, start=3)
    (tmp_path / "captions.csv").write_text("file,caption\nchat noir/été 1.png,un chat en été\n", encoding="utf-8")
    raw = load_folder(tmp_path, resolution=8)
    assert raw.class_names == ["chat noir", "犬"] and torch.bincount(raw.labels).tolist() == [3, 2]
    assert "un chat en été" in raw.captions


def test_undecodable_bytes_in_the_path_load_or_are_refused_cleanly(tmp_path):
    root = os.path.join(os.fsencode(tmp_path), b"d\xffata")
    try:
        for cls in (b"caf\xe9", b"dog"):
            os.makedirs(os.path.join(root, cls))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    for cls in (b"caf\xe9", b"dog"):
        for i in range(10):
            png(Path(os.fsdecode(os.path.join(root, cls, f"{i}.png".encode()))), seed=i)
    source = "folder:" + os.fsdecode(root)  # surrogate-escaped bytes
    with pytest.raises(ConfigError) as refused:  # a run's config.toml could not hold the path, so a run is refused
        cfg_for(source)
    assert "data.source" in str(refused.value) and "0xff" in one_sentence(refused, "not UTF-8")
    data = load_imageset(DataConfig(source=source), seed=0)  # the data layer itself reads such a folder
    assert len(data) == 20 and data.class_names == ["caf\ufffd", "dog"]
    for text in (data.name, *data.class_names, data.describe()):
        text.encode("utf-8")
    for kind in ("folder", "cifar"):
        with pytest.raises(DataError) as err:
            load_imageset(DataConfig(source=f"{kind}:" + os.fsdecode(os.path.join(root, b"gone\xff"))), seed=0)
        assert "gone\ufffd" in one_sentence(err, "does not exist")


def test_a_file_with_an_image_name_that_is_not_an_image(tmp_path):
    images(tmp_path, 2)
    (tmp_path / "photo.jpg").write_bytes(b"#!/bin/sh\necho hello\n")
    (tmp_path / "zero.png").write_bytes(b"")
    raw = load_folder(tmp_path, resolution=8)
    assert len(raw) == 2 and sorted(raw.skipped_examples) == ["photo.jpg", "zero.png"]


# ---------------------------------------------------------------------------
# CIFAR files
# ---------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar(parent: Path) -> Path:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": [int(x) for x in rng.integers(0, 10, 4)], b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_a_doctored_cifar_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = _cifar(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": []}))
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source=f"cifar:{folder}"), seed=0)
    one_sentence(err, "data_batch_2")
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["pickle", "binary"])
def test_a_truncated_cifar_batch_is_refused_naming_it(tmp_path, layout):
    if layout == "pickle":
        folder = _cifar(tmp_path)
        damaged = folder / "data_batch_3"
    else:
        folder = tmp_path / "cifar-10-batches-bin"
        folder.mkdir()
        rows = np.random.default_rng(0).integers(0, 256, (3, 3073), dtype=np.uint8)
        for i in range(1, 6):
            rows.tofile(folder / f"data_batch_{i}.bin")
        rows.tofile(folder / "test_batch.bin")
        damaged = folder / "data_batch_3.bin"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source=f"cifar:{folder}"), seed=0)
    one_sentence(err, str(damaged), "fetch")


def test_skipped_files_and_links_are_named_where_the_run_starts(tmp_path, capsys):
    """The notes the data layer writes reach the console line and the Started event (the window's status bar)."""
    from ssl_studio.cli import main
    from ssl_studio.engine.events import Started
    from ssl_studio.engine.runs import replay_events

    root = images(tmp_path / "photos", 24)
    (root / "broken.png").write_bytes(b"not an image")
    os.symlink("..", root / "loop")
    out = tmp_path / "runs"
    code = main(["train", "--data", f"folder:{root}", "--steps", "1", "--batch-size", "16", "--set", "model.width=8",
                 "--set", "probe.size=16", "--set", "probe.visuals_every=0", "--precision", "float32", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "broken.png" in err and "link" in err
    (run,) = out.iterdir()
    started = next(e for e in replay_events(run)[0] if isinstance(e, Started))
    assert any("broken.png" in n for n in started.data_notes) and any("link" in n for n in started.data_notes)


def test_named_pipes_in_a_folder_are_never_opened_and_are_named(tmp_path):
    """A pipe called f.png (or captions.csv, or a caption sidecar) was skipped without a word; opening one would wait
    for a writer forever.  Now each is named in a note, and the images beside them load."""
    import threading

    for label in ("a", "b"):
        images(tmp_path / label, 3)
    for rel in ("a/f.png", "captions.csv", "b/0.txt"):
        os.mkfifo(tmp_path / rel)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("raw", load_folder(tmp_path, resolution=8, workers=1)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "still loading after 30 s"
    raw = box["raw"]
    assert len(raw.images) == 6 and raw.class_names == ["a", "b"]
    (note,) = [n for n in raw.notes if "special file" in n]
    assert "3 special files" in note and all(rel in note for rel in ("a/f.png", "captions.csv", "b/0.txt")), raw.notes
