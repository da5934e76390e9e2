"""Digits, folder and CIFAR sources, the safe unpickler, split and limit rules.

Every file here is made in tmp_path; nothing is downloaded and the dev data in
shared/ is not used.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_studio.config import DataConfig
from ssl_studio.data import DataError, ImageSet, load_imageset
from ssl_studio.data.imageset import split_indices
from ssl_studio.data.safe_pickle import safe_load, safe_loads
from ssl_studio.params import ConfigError


def load(source: str, **kw) -> ImageSet:
    seed = kw.pop("seed", 0)
    progress = kw.pop("progress", None)
    return load_imageset(DataConfig(source=source, **kw), seed, progress)


def solid(mode: str, size: tuple[int, int], value) -> Image.Image:
    return Image.new(mode, size, value)


def close_to(img: torch.Tensor, rgb, tol: float = 8.0) -> bool:
    """``img`` (3×H×W uint8) is everywhere within ``tol`` of ``rgb``."""
    return bool(((img.float() - torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)).abs() <= tol).all())


def find(s: ImageSet, rgb, tol: float = 8.0) -> list[int]:
    return [i for i in range(len(s)) if close_to(s.images[i], rgb, tol)]


# ---------------------------------------------------------------------------
# a messy labelled folder
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("messy")
    cats, dogs = root / "cats", root / "dogs"
    cats.mkdir()
    dogs.mkdir()
    solid("RGB", (40, 30), (180, 30, 30)).save(cats / "rgb.jpg", quality=95)
    solid("L", (20, 20), 77).save(cats / "grey.png")
    solid("RGBA", (16, 16), (255, 0, 0, 128)).save(cats / "alpha.png")
    solid("RGB", (16, 16), (200, 100, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(cats / "pal.png")
    Image.fromarray(np.full((10, 12), 40000, dtype=np.uint16)).save(cats / "deep.png")  # I;16
    solid("RGB", (1200, 800), (10, 200, 10)).save(cats / "big.jpg", quality=95)
    solid("RGB", (6, 4), (0, 0, 255)).save(cats / "tiny.png")  # MIN_SIDE on its shorter side: the smallest kept
    solid("RGB", (32, 32), (240, 240, 0)).save(dogs / "a.jpg", quality=95)
    (dogs / "a.txt").write_text("a sleepy dog\n")
    solid("RGB", (50, 64), (90, 90, 200)).save(dogs / "b.jpg", quality=95)
    solid("CMYK", (20, 20), (0, 255, 255, 0)).save(dogs / "cmyk.jpg", quality=95)
    good = io_bytes(solid("RGB", (32, 32), (1, 2, 3)))
    (dogs / "broken.jpg").write_bytes(good[:40] + b"\x00garbage" * 20)
    (dogs / "empty.png").write_bytes(b"")
    (dogs / "notes.txt").write_text("not an image")
    (dogs / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "captions.csv").write_text("file,caption\ncats/rgb.jpg,a red cat\n")
    return root


def io_bytes(im: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    return buf.getvalue()


def test_messy_folder_loads_every_good_file(messy):
    calls = []
    s = load(f"folder:{messy}", progress=lambda d, t: calls.append((d, t)))
    assert len(s) == 10
    assert s.images.shape == (10, 3, 32, 32) and s.images.dtype == torch.uint8
    assert s.class_names == ["cats", "dogs"] and s.num_classes == 2
    assert torch.bincount(s.labels).tolist() == [7, 3]
    assert s.skipped == 3
    assert sorted(s.skipped_examples) == ["dogs/broken.jpg", "dogs/empty.png", "dogs/notes.txt"]
    assert calls and calls[-1] == (13, 13)
    assert s.name == f"folder:{messy.name}"


@pytest.mark.parametrize(
    "rgb, label, what",
    [
        ((180, 30, 30), 0, "jpeg"),
        ((77, 77, 77), 0, "L grey"),
        ((255, 127, 127), 0, "RGBA on white"),
        ((200, 100, 0), 0, "palette"),
        ((156, 156, 156), 0, "16-bit scaled, not clipped"),
        ((10, 200, 10), 0, "big"),
        ((0, 0, 255), 0, "tiny"),
        ((240, 240, 0), 1, "dog jpeg"),
        ((255, 0, 0), 1, "CMYK"),
    ],
)
def test_every_mode_becomes_the_right_rgb(messy, rgb, label, what):
    s = load(f"folder:{messy}")
    hits = find(s, rgb)
    assert len(hits) == 1, what
    assert int(s.labels[hits[0]]) == label, what


def test_folder_captions_from_csv_and_sidecars(messy):
    s = load(f"folder:{messy}")
    assert len(s.captions) == len(s)
    red = find(s, (180, 30, 30))[0]
    yellow = find(s, (240, 240, 0))[0]
    assert s.captions[red] == "a red cat"
    assert s.captions[yellow] == "a sleepy dog"
    assert s.captions[find(s, (0, 0, 255))[0]] == "a photo of a cats"


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(5):
        solid("RGB", (20, 24), (i * 40, 10, 10)).save(tmp_path / f"{i}.png")
    s = load(f"folder:{tmp_path}", resolution=16, val_fraction=0.2)
    assert len(s) == 5 and s.labels is None and s.class_names is None and s.num_classes == 0
    assert s.captions is None and s.resolution == 16
    assert len(s.val_index) == 1 and len(s.train_index) == 4


def test_train_test_layout_is_the_split(tmp_path):
    for part, colour, count in (("train", (200, 0, 0), 4), ("test", (0, 0, 200), 2)):
        for cls in ("a", "b"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(count):
                solid("RGB", (8, 8), colour).save(tmp_path / part / cls / f"{i}.png")
    s = load(f"folder:{tmp_path}", val_fraction=0.5)
    assert len(s) == 12 and s.class_names == ["a", "b"]
    assert sorted(find(s, (0, 0, 200))) == s.val_index.tolist()
    assert sorted(find(s, (200, 0, 0))) == s.train_index.tolist()
    assert torch.bincount(s.labels[s.val_index]).tolist() == [2, 2]


def _assert_names_path(err: pytest.ExceptionInfo, path: Path):
    assert isinstance(err.value, ConfigError)
    assert err.value.field == "data.source"
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_empty_and_unreadable_folders_are_clear_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        load(f"folder:{missing}")
    _assert_names_path(err, missing)
    assert "does not exist" in str(err.value)

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load(f"folder:{empty}")
    _assert_names_path(err, empty)
    assert "no image files" in str(err.value)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (bad / "readme.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        load(f"folder:{bad}")
    _assert_names_path(err, bad)
    assert "none of its 2 files" in str(err.value)

    afile = tmp_path / "file.png"
    solid("RGB", (4, 4), 0).save(afile)
    with pytest.raises(DataError) as err:
        load(f"folder:{afile}")
    _assert_names_path(err, afile)


def test_folder_limit_is_stratified(tmp_path):
    for cls, n in (("a", 30), ("b", 10)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            solid("L", (8, 8), i).save(tmp_path / cls / f"{i}.png")
    s = load(f"folder:{tmp_path}", limit=8)
    assert len(s) == 8
    assert torch.bincount(s.labels).tolist() == [6, 2]


# ---------------------------------------------------------------------------
# digits, unknown sources
# ---------------------------------------------------------------------------

def test_digits():
    s = load("digits", val_fraction=0.1)
    assert len(s) == 1797 and s.images.shape == (1797, 3, 32, 32)
    assert s.class_names == [str(i) for i in range(10)]
    assert sorted(set(s.labels.tolist())) == list(range(10))
    seven = s.labels.tolist().index(7)
    assert s.captions[seven] == "a handwritten seven"
    assert torch.equal(s.images[:, 0], s.images[:, 1])
    assert len(s.val_index) == 180


def test_unknown_source():
    with pytest.raises(DataError) as err:
        load("imagenet")
    assert err.value.field == "data.source"
    assert "folder:PATH" in str(err.value) and "imagenet" in str(err.value)
    with pytest.raises(DataError):
        load("folder:")


# ---------------------------------------------------------------------------
# CIFAR
# ---------------------------------------------------------------------------

def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, obj, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10_py(parent: Path, per_batch: int = 4, test: int = 3) -> Path:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        rows = _rows(per_batch, i)
        rows[0, :32] = 255  # first row of the red plane of the first image
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"x", b"labels": [(i + j) % 10 for j in range(per_batch)], b"data": rows, b"filenames": [b"f"] * per_batch})
    _dump(folder / "test_batch", {b"labels": [j % 10 for j in range(test)], b"data": _rows(test, 99)}, protocol=4)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch})
    return folder


def test_cifar10_pickle_layout(tmp_path):
    folder = make_cifar10_py(tmp_path)
    for source in (f"cifar:{tmp_path}", f"cifar:{folder}"):
        s = load(source)
        assert len(s) == 23 and s.images.shape == (23, 3, 32, 32)
        assert s.class_names[0] == "airplane" and s.num_classes == 10
        assert s.val_index.tolist() == [20, 21, 22]
        assert s.train_index.tolist() == list(range(20))
        assert (s.images[0, 0, 0] == 255).all()
        expected = torch.from_numpy(_rows(4, 1)[1].reshape(3, 32, 32))
        assert torch.equal(s.images[1], expected)


def test_cifar100_pickle_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump(folder / "train", {b"fine_labels": [5, 99, 0, 7], b"coarse_labels": [1, 2, 3, 4], b"data": _rows(4, 1)})
    _dump(folder / "test", {b"fine_labels": [1, 2], b"coarse_labels": [0, 0], b"data": _rows(2, 2)}, protocol=5)
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"x"] * 20})
    s = load(f"cifar:{tmp_path}", resolution=16)
    assert len(s) == 6 and s.num_classes == 100 and s.class_names[99] == "c99"
    assert s.labels.tolist() == [5, 99, 0, 7, 1, 2]
    assert s.images.shape == (6, 3, 16, 16)
    assert s.val_index.tolist() == [4, 5]


def test_cifar10_binary_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        rows = _rows(3, i)
        labels = np.array([[i % 10], [(i + 1) % 10], [(i + 2) % 10]], dtype=np.uint8)
        np.concatenate([labels, rows], axis=1).tofile(folder / f"data_batch_{i}.bin")
    np.concatenate([np.array([[9], [8]], dtype=np.uint8), _rows(2, 42)], axis=1).tofile(folder / "test_batch.bin")
    (folder / "batches.meta.txt").write_text("\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]) + "\n\n")
    s = load(f"cifar:{folder}")
    assert len(s) == 17 and s.class_names[-1] == "truck"
    assert s.labels[:3].tolist() == [1, 2, 3] and s.labels[-2:].tolist() == [9, 8]
    assert torch.equal(s.images[-1], torch.from_numpy(_rows(2, 42)[1].reshape(3, 32, 32)))
    assert s.val_index.tolist() == [15, 16]
    (folder / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(DataError) as err:
        load(f"cifar:{folder}")
    assert "test_batch.bin" in str(err.value)


def test_cifar_limit_keeps_the_official_split(tmp_path):
    make_cifar10_py(tmp_path, per_batch=20, test=20)
    s = load(f"cifar:{tmp_path}", limit=24)
    assert len(s) == 24
    assert len(s.val_index) == 4 and len(s.train_index) == 20


def test_cifar_missing_is_a_clear_error(tmp_path):
    with pytest.raises(DataError) as err:
        load(f"cifar:{tmp_path}")
    _assert_names_path(err, tmp_path)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = make_cifar10_py(tmp_path / "c")
    _dump(folder / "data_batch_3", {b"data": _Evil(marker), b"labels": []})
    with pytest.raises(DataError) as err:
        load(f"cifar:{folder}")
    assert "data_batch_3" in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    with pytest.raises(DataError):
        safe_loads(pickle.dumps(_Evil(marker)))
    with pytest.raises(DataError):
        safe_loads(b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.")
    assert not marker.exists()


def test_safe_pickle_admits_numpy_at_every_protocol(tmp_path):
    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"n": np.int64(3), "names": ["a", b"b"], "t": (1.5, None)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}"
        _dump(path, obj, protocol)
        out = safe_load(path)
        assert np.array_equal(out[b"data"], obj[b"data"]) and out[b"n"] == 3 and out["t"] == (1.5, None)
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as err:
        safe_load(tmp_path / "junk")
    assert "junk" in str(err.value)


# ---------------------------------------------------------------------------
# split, limit, subset
# ---------------------------------------------------------------------------

def test_split_is_seeded_and_stratified():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    train, val = split_indices(labels, 1000, 0.2, seed=1)
    assert len(val) == 200 and len(train) == 800
    assert set(train.tolist()).isdisjoint(val.tolist())
    counts = torch.bincount(labels[val], minlength=3).tolist()
    assert all(abs(c - e) <= 1 for c, e in zip(counts, [100, 60, 40]))
    again, _ = split_indices(labels, 1000, 0.2, seed=1)
    other, _ = split_indices(labels, 1000, 0.2, seed=2)
    assert torch.equal(train, again) and not torch.equal(train, other)


def test_zero_val_fraction_probes_on_train_images():
    s = load("shapes", num_images=1200, val_fraction=0.0)
    assert len(s.train_index) == 1200
    assert len(s.val_index) == 1000
    assert set(s.val_index.tolist()) <= set(s.train_index.tolist())


def test_limit_and_subset():
    s = load("digits", limit=100, seed=4)
    assert len(s) == 100
    assert torch.bincount(s.labels, minlength=10).min() >= 9
    assert len(s.train_index) + len(s.val_index) == 100
    sub = s.subset(torch.arange(0, 100, 2))
    assert len(sub) == 50
    assert set(sub.train_index.tolist()) | set(sub.val_index.tolist()) == set(range(50))
    assert torch.equal(sub.images[3], s.images[6]) and sub.captions[3] == s.captions[6]
    assert len(sub.mean) == 3 and all(0 < v < 1 for v in sub.std)
