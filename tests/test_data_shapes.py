"""The procedural shapes source: determinism, layout, attributes, masks, held-out pairs, chosen backgrounds."""

from __future__ import annotations

import pytest
import torch

from ssl_studio.config import DataConfig
from ssl_studio.data import DataError, ImageSet, load_imageset
from ssl_studio.data import shapes


@pytest.fixture(scope="module")
def small() -> shapes.RawImages:
    return shapes.generate(600, 32, seed=3)


def test_same_seed_same_tensor_other_seed_differs():
    a = shapes.generate(200, 32, seed=7)
    b = shapes.generate(200, 32, seed=7)
    c = shapes.generate(200, 32, seed=8)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.masks, b.masks)
    assert a.captions == b.captions
    assert not torch.equal(a.images, c.images)


def test_layout_dtypes_and_ranges(small):
    assert small.images.shape == (600, 3, 32, 32)
    assert small.images.dtype == torch.uint8 and small.images.is_contiguous()
    assert small.masks.shape == (600, 32, 32) and small.masks.dtype == torch.bool
    assert small.labels.dtype == torch.int64
    assert int(small.labels.min()) >= 0 and int(small.labels.max()) < len(shapes.SHAPES)
    assert 6 <= len(small.class_names) <= 10
    # balanced classes, and real contrast (not a blank render)
    counts = torch.bincount(small.labels, minlength=len(shapes.SHAPES))
    assert int(counts.max() - counts.min()) <= 1
    assert small.images.float().std() > 30
    assert all(small.masks.flatten(1).any(1)), "every image has a visible object"


def test_renders_at_other_resolutions():
    r = shapes.generate(20, 64, seed=0)
    assert r.images.shape == (20, 3, 64, 64) and r.masks.shape == (20, 64, 64)


def test_captions_name_the_attributes(small):
    attrs = small.attributes
    assert set(attrs) == {"colour", "shape", "size", "position", "background"}
    for i in range(0, 600, 37):
        cap = small.captions[i]
        for key in ("colour", "shape", "size", "background"):
            assert attrs[key][i] in cap, (key, cap)
        assert attrs["position"][i] in cap
        assert small.class_names[int(small.labels[i])] == attrs["shape"][i]
    assert small.captions[0].startswith("a ")


def test_mask_is_the_object(small):
    # inside the mask the pixels have the object's palette colour (up to jitter, noise, edges)
    colour_of = torch.tensor([shapes.PALETTE[c] for c in small.attributes["colour"]], dtype=torch.float32)
    errs = []
    for i in range(0, 600, 5):
        m = small.masks[i]
        inside = small.images[i].float()[:, m].median(dim=1).values
        errs.append((inside - colour_of[i]).abs().max())
    assert torch.stack(errs).median() < 20
    # the mask area grows with the size class
    area = small.masks.flatten(1).float().sum(1)
    sizes = small.attributes["size"]
    mean_area = [area[[s == name for s in sizes]].mean() for name in shapes.SIZES]
    assert mean_area[0] < mean_area[1] < mean_area[2]


def test_held_out_pairs_never_in_train():
    cfg = DataConfig(source="shapes", num_images=1000, held_out=["red-triangle", "blue-star"])
    s = load_imageset(cfg, seed=0)
    assert isinstance(s, ImageSet)
    pairs = list(zip(s.attributes["colour"], s.attributes["shape"]))
    banned = {("red", "triangle"), ("blue", "star")}
    assert not any(pairs[i] in banned for i in s.train_index.tolist())
    assert sum(p in banned for p in pairs) > 0
    assert len(s.train_index) < 900  # some training images were removed


@pytest.mark.parametrize("name, word", [("magenta-triangle", "colour"), ("red-blob", "shape"), ("redtriangle", "colour-shape")])
def test_held_out_names_are_validated(name, word):
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source="shapes", num_images=64, held_out=[name]), seed=0)
    assert err.value.field == "data.held_out"
    assert word in str(err.value) and name in str(err.value)


def test_held_out_only_for_shapes():
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source="digits", held_out=["red-triangle"]), seed=0)
    assert err.value.field == "data.held_out"


def test_backgrounds_restrict_the_texture_and_keep_the_objects(small):
    plain = shapes.generate(600, 32, seed=3, backgrounds=["plain"])
    assert set(plain.attributes["background"]) == {"plain"}
    # the same objects as the default data set, only the backgrounds differ
    assert torch.equal(plain.labels, small.labels) and torch.equal(plain.masks, small.masks)
    assert plain.attributes["colour"] == small.attributes["colour"]
    # a plain background varies only by sensor noise and the object's soft edge; textures vary more
    def background_spread(raw, kinds):
        return torch.stack([raw.images[i].float()[:, ~raw.masks[i]].std(dim=1).mean() for i in range(0, 600, 5)
                            if raw.attributes["background"][i] in kinds]).median()
    textures = set(shapes.BACKGROUNDS) - {"plain"}
    assert background_spread(plain, {"plain"}) + 2 < background_spread(small, textures)
    # two kinds: both appear, nothing else; naming all six is the default data set
    two = load_imageset(DataConfig(source="shapes", num_images=600, backgrounds=["Striped", "dotted"]), seed=3)
    assert set(two.attributes["background"]) == {"striped", "dotted"}
    assert torch.equal(shapes.generate(600, 32, seed=3, backgrounds=list(shapes.BACKGROUNDS)).images, small.images)


def test_fixed_background_draws_every_background_alike_and_keeps_the_objects(small):
    fixed = load_imageset(DataConfig(source="shapes", num_images=600, backgrounds=["plain"], fixed_background=True), seed=3)
    plain = shapes.generate(600, 32, seed=3, backgrounds=["plain"])
    assert torch.equal(fixed.masks, plain.masks) and torch.equal(fixed.labels, plain.labels)  # the same objects
    # the background pixels of every image: mid-grey up to sensor noise (random colours between images without the option)
    def background_means(images, masks):
        return torch.stack([images[i].float()[:, ~masks[i] & ~_near_edge(masks[i])].mean(1) for i in range(0, 600, 10)])
    grey = background_means(fixed.images, fixed.masks)
    assert (grey - torch.tensor(shapes.FIXED_BACKGROUND_RGB[0])).abs().max() < 2.0
    assert background_means(plain.images, plain.masks).std(0).min() > 20  # random colours between images
    inside = fixed.masks[0] & ~_near_edge(~fixed.masks[0])  # the object's pixels away from its soft edge: untouched
    assert inside.sum() > 50 and torch.equal(fixed.images[0][:, inside], plain.images[0][:, inside])
    # textured backgrounds keep their textures, drawn in the two fixed greys
    textured = shapes.generate(600, 32, seed=3, fixed_background=True)
    assert torch.equal(textured.masks, small.masks)
    colours = textured.images[0].float()[:, ~small.masks[0] & ~_near_edge(small.masks[0])]
    assert (colours[0] == colours[1]).all() and (colours[1] == colours[2]).all()  # grey: the sensor noise is one plane for all channels
    assert colours.min() >= 58 - 10 and colours.max() <= 128 + 10
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source="digits", fixed_background=True), seed=0)
    assert err.value.field == "data.fixed_background"


def _near_edge(mask):
    """Pixels within one pixel of ``mask``: at an object's soft edge object and background colours blend."""
    grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    return grown & ~mask


def test_backgrounds_are_validated():
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source="shapes", num_images=64, backgrounds=["plain", "marble"]), seed=0)
    assert err.value.field == "data.backgrounds"
    assert "'marble'" in str(err.value) and "dotted" in str(err.value)
    with pytest.raises(DataError) as err:
        load_imageset(DataConfig(source="digits", backgrounds=["plain"]), seed=0)
    assert err.value.field == "data.backgrounds"


def _knn_accuracy(x_train, y_train, x_val, y_val, k=20, t=0.1, classes=10):
    a = torch.nn.functional.normalize(x_train.flatten(1).float(), dim=1)
    b = torch.nn.functional.normalize(x_val.flatten(1).float(), dim=1)
    sim, idx = (b @ a.T).topk(k, dim=1)
    votes = torch.zeros(len(b), classes).scatter_add_(1, y_train[idx], (sim / t).exp())
    return (votes.argmax(1) == y_val).float().mean().item()


def test_raw_pixels_are_a_poor_feature():
    """The set is meant to need learning: raw-pixel k-NN stays far below 40 %."""
    s = load_imageset(DataConfig(source="shapes", num_images=2000), seed=0)
    acc = _knn_accuracy(s.images[s.train_index], s.labels[s.train_index], s.images[s.val_index], s.labels[s.val_index])
    assert acc < 0.4


def test_shapes_recommends_whole_object_crops_unless_the_user_or_objective_says_otherwise():
    from ssl_studio.config import config_from_mapping
    from ssl_studio.engine.build import effective_augment

    def crop_min(**mapping):
        return effective_augment(config_from_mapping(mapping)).crop_scale_min

    assert crop_min(objective={"name": "simclr"}, data={"source": "shapes"}) == 0.85
    assert crop_min(objective={"name": "simclr"}, data={"source": "digits"}) == 0.2  # the lab's default
    assert crop_min(objective={"name": "simclr"}, data={"source": "shapes"}, augment={"crop_scale_min": 0.3}) == 0.3
    assert crop_min(objective={"name": "mae"}, data={"source": "shapes"}, model={"backbone": "vit"}) == 0.2  # MAE's own
