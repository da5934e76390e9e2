"""The CLIP lab: tokenizer, text encoder, CLIP/SigLIP losses, zero-shot scoring, held-out pairs, training on every source."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.events import Evaluated, Step, Visuals
from ssl_studio.engine.trainer import Trainer
from ssl_studio.models.text import TextEncoder
from ssl_studio.models.tokenizer import EOT_ID, PAD_ID, SOT_ID, UNK_ID, WordTokenizer, split_words
from ssl_studio.objectives.losses import CLIP_INIT_LOG_SCALE, SIGLIP_INIT_BIAS, SIGLIP_INIT_LOG_SCALE, clip_loss, siglip_loss
from ssl_studio.params import ConfigError


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path, **over):
    mapping = {
        "objective": {"name": "clip", "text_layers": 2, "text_width": 64, "embed_dim": 32},
        "data": {"source": "shapes", "num_images": 256},
        "model": {"width": 16},
        "batch_size": 32,
        "budget": {"steps": 10},
        "probe": {"every": 0, "size": 64, "visuals_every": 0},
        "precision": "float32",
        "out": str(tmp_path),
    }
    for key, value in over.items():
        if isinstance(value, dict):
            mapping.setdefault(key, {}).update(value)
        else:
            mapping[key] = value
    return config_from_mapping(mapping)


# -- tokenizer -------------------------------------------------------------------------

CAPTIONS = ["A small red triangle, at the top left.", "a large blue circle on a striped background", "a red circle"]


def test_tokenizer_round_trip_and_specials():
    tok = WordTokenizer.build(CAPTIONS)
    assert tok.itos[:4] == ["<pad>", "<sot>", "<eot>", "<unk>"]
    ids = tok.encode(CAPTIONS, context_length=16)
    assert ids.shape == (3, 16) and ids.dtype == torch.int64
    assert (ids[:, 0] == SOT_ID).all()
    first = ids[0].tolist()
    n_words = len(split_words(CAPTIONS[0]))  # 9 words and 2 punctuation marks
    assert n_words == 10 and first[n_words + 1] == EOT_ID and set(first[n_words + 2:]) == {PAD_ID}
    assert tok.decode(ids[0]) == "a small red triangle, at the top left."
    assert [tok.decode(r) for r in ids[1:]] == [c.lower() for c in CAPTIONS[1:]]
    # the most frequent word gets the first id after the specials
    assert tok.itos[4] == "a"
    again = WordTokenizer.from_json(tok.to_json())
    assert again == tok and torch.equal(again.encode(CAPTIONS, 16), ids)


def test_tokenizer_unknown_words_min_count_and_truncation():
    tok = WordTokenizer.build(CAPTIONS, min_count=2, always=["hexagon"])
    assert "triangle" not in tok.stoi and "red" in tok.stoi and "hexagon" in tok.stoi  # rare dropped, class names kept
    ids = tok.encode(["a purple triangle"], 8)[0].tolist()
    assert ids[:5] == [SOT_ID, tok.stoi["a"], UNK_ID, UNK_ID, EOT_ID]
    assert tok.decode(ids) == "a <unk> <unk>"
    assert tok.unknown_words("a purple triangle") == ["purple", "triangle"]
    long = tok.encode(["a " * 50], 6)[0].tolist()
    assert long[0] == SOT_ID and long[-1] == EOT_ID and PAD_ID not in long  # <eot> always fits
    with pytest.raises(ValueError):
        WordTokenizer.from_json('{"kind": "bpe"}')


# -- text encoder ----------------------------------------------------------------------

def test_text_encoder_is_causal_and_pools_at_eot():
    torch.manual_seed(0)
    enc = TextEncoder(vocab_size=20, embed_dim=8, context_length=12, width=32, layers=2, heads=4).eval()
    a = torch.tensor([[SOT_ID, 5, 6, 7, 8, 9, EOT_ID, 0, 0, 0, 0, 0]])
    b = a.clone()
    b[0, 4] = 11  # change a later token
    fa, fb = enc.token_features(a), enc.token_features(b)
    torch.testing.assert_close(fa[:, :4], fb[:, :4])  # earlier positions cannot see it
    assert (fa[:, 4:7] - fb[:, 4:7]).abs().max() > 1e-4
    # padding after <eot> never reaches the pooled feature
    c = a.clone()
    c[0, 8:] = 13
    torch.testing.assert_close(enc(a), enc(c))
    torch.testing.assert_close(enc(a), enc.projection(fa[:, 6]))
    with pytest.raises(ValueError, match="context"):
        enc(torch.zeros(1, 13, dtype=torch.int64))


# -- losses ----------------------------------------------------------------------------

def test_clip_loss_hand_computed_symmetric_and_scaled():
    eye = torch.eye(2)
    # identity pairs, scale 2: each row's softmax is (e^2, e^0) -> loss = log(1 + e^-2)
    assert clip_loss(eye, eye, math.log(2.0)).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    s = 3.0
    sim = [[0.8, 0.0], [0.6 * 0.8 + 0.8 * 0.6, 0.8]]  # cosines (all vectors are unit)

    def ce(row, k):
        return -math.log(math.exp(s * row[k]) / sum(math.exp(s * v) for v in row))

    i2t = (ce(sim[0], 0) + ce(sim[1], 1)) / 2
    t2i = (ce([sim[0][0], sim[1][0]], 0) + ce([sim[0][1], sim[1][1]], 1)) / 2
    got = clip_loss(img, txt, math.log(s))
    assert got.item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)
    assert clip_loss(txt, img, math.log(s)).item() == pytest.approx(got.item(), rel=1e-6)  # symmetric in the towers
    assert clip_loss(img * 5, txt * 0.1, math.log(s)).item() == pytest.approx(got.item(), rel=1e-5)  # cosines only
    # a sharper scale lowers the loss of aligned pairs and raises it for swapped ones
    assert clip_loss(eye, eye, math.log(10)) < clip_loss(eye, eye, math.log(2))
    assert clip_loss(eye, eye.flip(0), math.log(10)) > clip_loss(eye, eye.flip(0), math.log(2))
    # clamped at ln 100 (Radford et al. 2021)
    assert clip_loss(img, txt, math.log(1000)).item() == pytest.approx(clip_loss(img, txt, math.log(100)).item())
    assert CLIP_INIT_LOG_SCALE == pytest.approx(math.log(1 / 0.07))


def test_clip_loss_duplicate_captions_are_positives():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = img.clone()  # images 0 and 1 share one caption
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    s = 4.0
    # row 0: logits (4, 4, 0), target (1/2, 1/2, 0) -> -log(e^4 / (2 e^4 + 1))
    row01 = -math.log(math.exp(s) / (2 * math.exp(s) + 1))
    row2 = -math.log(math.exp(s) / (math.exp(s) + 2))
    assert clip_loss(img, txt, math.log(s), positives=same).item() == pytest.approx((2 * row01 + row2) / 3, rel=1e-6)
    # distinct embeddings: the target of images 0 and 1 is split evenly over captions 0 and 1
    v = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    cos = (v @ v.T).tolist()

    def log_softmax(row, k):
        return s * row[k] - math.log(sum(math.exp(s * x) for x in row))

    rows = [-(log_softmax(cos[0], 0) + log_softmax(cos[0], 1)) / 2, -(log_softmax(cos[1], 0) + log_softmax(cos[1], 1)) / 2,
            -log_softmax(cos[2], 2)]
    assert clip_loss(v, v, math.log(s), positives=same).item() == pytest.approx(sum(rows) / 3, rel=1e-5)  # t2i = i2t here
    with pytest.raises(ValueError, match="diagonal"):
        clip_loss(img, txt, positives=torch.zeros(3, 3, dtype=torch.bool))


def test_siglip_loss_hand_computed():
    eye = torch.eye(2)
    # t' = ln 10, b = -10: positives sit at logit 0 (-log σ(0) = ln 2), negatives at -10 (-log σ(10))
    expected = (2 * math.log(2) + 2 * math.log(1 + math.exp(-10))) / 2
    assert siglip_loss(eye, eye, SIGLIP_INIT_LOG_SCALE, SIGLIP_INIT_BIAS).item() == pytest.approx(expected, rel=1e-6)
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    txt = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    t, b = 2.0, -1.0
    cos = [[0.8, 0.0], [0.96, 0.8]]
    total = 0.0
    for i in range(2):
        for j in range(2):
            z = 1 if i == j else -1
            total += math.log(1 + math.exp(-z * (t * cos[i][j] + b)))
    assert siglip_loss(img, txt, math.log(t), b).item() == pytest.approx(total / 2, rel=1e-6)
    assert siglip_loss(txt, img, math.log(t), b).item() == pytest.approx(total / 2, rel=1e-6)  # symmetric
    # bias as a learnable tensor gets a gradient
    bias = torch.tensor(-10.0, requires_grad=True)
    siglip_loss(img, txt, SIGLIP_INIT_LOG_SCALE, bias).backward()
    assert bias.grad is not None and bias.grad.item() < 0  # raising b helps the positives first


# -- zero-shot scoring on a hand-built model -------------------------------------------

class _HandBuilt(torch.nn.Module):
    """Images embed as their mean colour; a text embeds as the colour it names ("blue" deliberately as green, "plain ..." as grey)."""

    VECTORS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 1.0, 0.0)}
    has_text_tower = True  # the objective contract's text tower: encode_image, encode_text, zeroshot_scoring, unknown_words

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, x):
        return F.normalize(x.mean((2, 3)), dim=1)

    def encode_text(self, texts):
        out = [(1.0, 1.0, 1.0) if t.startswith("plain") else next(v for k, v in self.VECTORS.items() if k in t) for t in texts]
        return F.normalize(torch.tensor(out), dim=1)

    def scale(self):
        return torch.tensor(10.0)

    def zeroshot_scoring(self):
        return "clip", float(self.scale()), None

    def unknown_words(self, text):
        return []


def _colour_imageset():
    from ssl_studio.data.imageset import ImageSet

    colours = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)
    labels = torch.arange(12) % 3
    images = colours[labels][:, :, None, None].expand(-1, -1, 8, 8).contiguous()
    names = ["red", "green", "blue"]
    return ImageSet(name="colours", images=images, labels=labels, class_names=names, captions=[f"a {names[y]} square" for y in labels],
                    masks=None, train_index=torch.arange(0, 6), val_index=torch.arange(6, 12), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_zeroshot_protocol_on_a_hand_built_model():
    from ssl_studio.config import AugmentConfig
    from ssl_studio.data.views import ViewMaker
    from ssl_studio.engine.zeroshot import class_text_embeddings, zeroshot_protocol

    data = _colour_imageset()
    views = ViewMaker(AugmentConfig(), 8, data.mean, data.std)
    model = _HandBuilt()
    # prompt ensembling: mean of normalised prompt embeddings, renormalised
    emb = class_text_embeddings(model.encode_text, ["red"], ["a {}", "plain {}"])
    torch.testing.assert_close(emb, F.normalize(torch.tensor([[1.0 + 1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)]]), dim=1))
    r = zeroshot_protocol(model, data, views, "cpu", templates=["a {}"])
    # red and green images are right; blue images tie at cos 0 with every class -> argmax takes "red"
    assert r["top1"] == pytest.approx(4 / 6)
    assert r["confusion"] == [[2, 0, 0], [0, 2, 0], [2, 0, 0]]
    assert r["per_class"] == {"red": 1.0, "green": 1.0, "blue": 0.0}
    assert r["indices"] == list(range(6, 12)) and r["predictions"] == [0, 1, 0, 0, 1, 0]
    # retrieval: "a blue square" embeds like green; captions repeat, a hit is the same caption text
    rec = r["recall"]
    assert rec["pairs"] == 6 and rec["distinct_captions"] == 3
    assert rec["image_to_text"]["r1"] == pytest.approx(4 / 6)
    assert rec["image_to_text"]["r5"] == 1.0 and rec["chance_r1"] == pytest.approx(1 / 3)


def test_zeroshot_probabilities_clip_and_siglip():
    from ssl_studio.objectives.clip import zeroshot_probabilities

    img = torch.tensor([[1.0, 0.0]])
    cls = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = zeroshot_probabilities(img, cls, 2.0, kind="clip")
    torch.testing.assert_close(p, torch.tensor([[math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]]))
    q = zeroshot_probabilities(img, cls, 10.0, -10.0, kind="siglip")
    torch.testing.assert_close(q, torch.tensor([[0.5, 1 / (1 + math.exp(10))]]))


# -- held-out compositions -------------------------------------------------------------

def test_held_out_pairs_never_reach_a_training_batch(tmp_path):
    cfg = tiny(tmp_path, data={"num_images": 400, "held_out": ["red-triangle", "blue-circle"]}, batch_size=64)
    trainer = Trainer(cfg)
    trainer._setup()
    data = trainer.imageset
    banned = {("red", "triangle"), ("blue", "circle")}
    pairs = list(zip(data.attributes["colour"], data.attributes["shape"]))
    assert sum(p in banned for p in pairs) > 0
    seen = set()
    for _ in range(3 * trainer.sampler.steps_per_epoch):  # three epochs of batches
        batch = trainer._make_batch()
        seen.update(batch.indices.tolist())
        assert not any(pairs[i] in banned for i in batch.indices.tolist())
        assert not any("red triangle" in c or "blue circle" in c or "triangle in red" in c or "circle in blue" in c
                       for c in batch.captions)
    assert len(seen) > 0.8 * len(data.train_index)


# -- training on every source ----------------------------------------------------------

def _run(cfg):
    events = []
    result = Trainer(cfg, callback=events.append).run()
    assert result.status == "completed", result.message
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert all(math.isfinite(v) for v in losses)
    return result, events, losses


def _falls(losses, k=3):
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_clip_trains_on_shapes_and_reports_zeroshot(tmp_path, loss):
    from ssl_studio.engine.runs import RunFolder

    cfg = tiny(tmp_path, objective={"loss": loss}, data={"held_out": ["red-triangle"]}, budget={"steps": 12},
               optim={"lr": 0.004}, probe={"every": 6, "visuals_every": 6})
    result, events, losses = _run(cfg)
    assert _falls(losses), losses
    metrics = [e.metrics for e in events if isinstance(e, Step)][-1]
    assert {"i2t_acc", "t2i_acc", "logit_scale"} <= set(metrics)
    vis = [e for e in events if isinstance(e, Visuals) and e.kind == "zeroshot"]
    assert vis and vis[-1].arrays["image_embeddings"].shape == (16, 32)
    assert vis[-1].arrays["top_index"].shape == (16, 3) and vis[-1].info["class_names"][2] == "triangle"
    np.testing.assert_allclose(np.linalg.norm(vis[-1].arrays["class_embeddings"], axis=1), 1.0, rtol=1e-5)
    zs = [e for e in events if isinstance(e, Evaluated)][-1].results["zeroshot"]
    assert 0.0 <= zs["top1"] <= 1.0 and len(zs["confusion"]) == 10
    assert {"image_to_text", "text_to_image"} <= set(zs["recall"])
    assert set(zs["attributes"]) == {"colour", "size", "position", "background", "shape"}
    assert zs["attributes"]["position"]["classes"] == 9 and zs["attributes"]["shape"]["top1"] == zs["top1"]
    folder = RunFolder(result.run_dir, create=False)
    report = folder.read_report()
    assert report["zeroshot"]["top1"] == zs["top1"]
    comp = report["zeroshot"]["compositions"]
    assert comp["unseen_images"] > 0 and comp["seen_images"] > 0 and "red-triangle" in comp["per_pair"]
    assert (result.run_dir / "tokenizer.json").is_file()


def test_clip_run_reloads_exactly_and_evaluates(tmp_path):
    from ssl_studio.engine.evaluate import evaluate_run, load_trained, report_markdown
    from ssl_studio.engine.zeroshot import TextScorer

    cfg = tiny(tmp_path, budget={"steps": 4})
    result, _, _ = _run(cfg)
    saved = WordTokenizer.from_json((result.run_dir / "tokenizer.json").read_text(encoding="utf-8"))
    _, data, objective, views, dev, _, step = load_trained(result.run_dir, "cpu")
    assert step == 4 and objective.tokenizer == saved
    out = evaluate_run(result.run_dir, ("zeroshot",), device="cpu")
    assert out["zeroshot"]["top1"] is not None
    assert "zero-shot" in report_markdown(result.run_dir)
    scorer = TextScorer(objective)
    emb = scorer(["a small red triangle", "a blue circle"])
    with torch.no_grad():
        np.testing.assert_allclose(emb, objective.encode_text(["a small red triangle", "a blue circle"]).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    # the scorer reads a copy: changing the live model leaves it alone until the next visuals step
    with torch.no_grad():
        objective.text.projection.weight.mul_(-1)
    np.testing.assert_allclose(scorer(["a blue circle"]), emb[1:], atol=1e-5)
    objective.visuals(views.plain(data.images[:4]))
    np.testing.assert_allclose(scorer(["a blue circle"]), -emb[1:], atol=1e-5)
    with torch.no_grad():
        x = views.plain(data.images[:3])
        np.testing.assert_allclose(scorer.project_images(objective.embed(x).numpy()), objective.encode_image(x).numpy(), atol=1e-5)


def test_checkpoint_with_another_vocabulary_loads(tmp_path):
    from ssl_studio.models import build_backbone
    from ssl_studio.config import ModelConfig
    from ssl_studio.objectives import ObjectiveContext
    from ssl_studio.objectives.clip import CLIP

    def make(captions):
        torch.manual_seed(0)
        bb = build_backbone(ModelConfig(width=8), 16)
        return CLIP(bb, CLIP.parse_params({"text_layers": 1, "text_width": 32, "embed_dim": 16}),
                    ObjectiveContext(image_size=16, captions=captions))

    a = make(["a red cat", "a blue dog", "a green bird on a hill"])
    b = make(["a cat"])
    params_before = [id(p) for p in b.parameters()]
    b.load_state_dict(a.state_dict())
    b.load_extra_state(a.extra_state())
    assert [id(p) for p in b.parameters()] == params_before  # an optimiser built earlier still holds them
    assert b.tokenizer == a.tokenizer
    with torch.no_grad():
        torch.testing.assert_close(b.encode_text(["a blue bird"]), a.encode_text(["a blue bird"]))


def test_clip_trains_on_digits(tmp_path):
    cfg = tiny(tmp_path, data={"source": "digits"}, budget={"steps": 12}, optim={"lr": 0.004})
    _, _, losses = _run(cfg)
    assert _falls(losses), losses


def _write_folder(root, classes: bool, captions: bool):
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220)}
    rows = ["file,caption"]
    rng = np.random.default_rng(0)
    for k in range(30):
        name = list(colours)[k % 3]
        arr = np.full((16, 16, 3), colours[name], np.uint8)
        arr[rng.integers(0, 8):, : rng.integers(8, 16)] //= 2
        rel = f"{name}/img{k}.png" if classes else f"img{k}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / rel)
        rows.append(f"{rel},a {'dark ' if k % 2 else ''}{name} square")
    if captions:
        (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _captioned_folder_run(tmp_path, val_fraction: float, steps: int):
    """CLIP on a flat folder of images with a captions.csv and no class folders."""
    root = tmp_path / "pics"
    _write_folder(root, classes=False, captions=True)
    cfg = tiny(tmp_path, data={"source": f"folder:{root}", "resolution": 16, "val_fraction": val_fraction}, batch_size=16,
               budget={"steps": steps}, optim={"lr": 0.004})
    return _run(cfg)


def test_clip_trains_on_a_captioned_folder(tmp_path):
    _, _, losses = _captioned_folder_run(tmp_path, val_fraction=0.0, steps=12)
    assert _falls(losses), losses


def test_an_unlabelled_captioned_folder_is_evaluated_by_retrieval(tmp_path):
    """No labels, so no k-NN or zero-shot classes; image-text retrieval on the held-out pairs still says what CLIP learned."""
    from ssl_studio.engine.evaluate import evaluate_run, report_markdown

    result, events, _ = _captioned_folder_run(tmp_path, val_fraction=0.2, steps=4)
    zs = [e for e in events if isinstance(e, Evaluated)][-1].results["zeroshot"]
    assert zs["top1"] is None and zs["recall"]["pairs"] == 6 and zs["recall"]["distinct_captions"] <= 6
    assert 0.0 <= zs["recall"]["image_to_text"]["r5"] <= 1.0
    assert "recall_i2t_r5" in result.summary and "knn_k20" not in result.summary
    again = evaluate_run(result.run_dir, ["zeroshot"])
    assert again["zeroshot"]["recall"] == zs["recall"]
    text = report_markdown(result.run_dir)  # no top-1 without labels: the report shows retrieval instead
    assert "retrieval R@1 / R@5" in text and "| zero-shot |" not in text
    with pytest.raises(ConfigError) as err:
        evaluate_run(result.run_dir, ["knn", "zeroshot"])
    assert err.value.field == "data.source" and "no labels" in str(err.value) and "knn" in str(err.value)


def test_folder_needs_captions_or_classes(tmp_path):
    from ssl_studio.engine.build import load_data

    bare = tmp_path / "bare"
    _write_folder(bare, classes=False, captions=False)
    with pytest.raises(ConfigError) as err:
        load_data(tiny(tmp_path, data={"source": f"folder:{bare}", "resolution": 16}))
    assert err.value.field == "data.source"
    assert "captions.csv" in str(err.value) and "class sub-folders" in str(err.value) and "neither captions nor class labels" in str(err.value)
    classes = tmp_path / "classes"
    _write_folder(classes, classes=True, captions=False)
    data = load_data(tiny(tmp_path, data={"source": f"folder:{classes}", "resolution": 16}))
    assert len(data.captions) == len(data)
    for cap, y in zip(data.captions, data.labels.tolist()):
        assert data.class_names[y] in cap and cap != data.class_names[y]  # the class name through a template


def test_shapes_and_digits_captions_have_several_phrasings():
    from ssl_studio.data import shapes
    from ssl_studio.data.digits import digit_captions

    raw = shapes.generate(200, 16, seed=0)
    starts = {" ".join(c.split()[:2]) for c in raw.captions}
    assert len({c.split(",")[0].count(" ") for c in raw.captions}) > 2 and len(starts) > 5
    assert shapes.generate(200, 16, seed=0).captions == raw.captions
    caps = digit_captions([7, 7, 7, 3])
    assert caps[0] == "a handwritten seven" and caps[1] == "the digit 7" and len(set(caps[:3])) == 3


def test_clip_augmentation_keeps_the_captions_true():
    from ssl_studio.engine.build import effective_augment

    cfg = config_from_mapping({"objective": {"name": "clip"}})
    aug = effective_augment(cfg)
    assert aug.flip_p == 0.0 and aug.hue == 0.0 and aug.grayscale_p == 0.0 and aug.crop_scale_min >= 0.8
    user = config_from_mapping({"objective": {"name": "clip"}, "augment": {"flip_p": 0.3}})
    assert effective_augment(user).flip_p == 0.3  # a user's own choice wins


def test_no_temperature_ablation_fixes_the_scale(tmp_path):
    cfg = tiny(tmp_path, ablations=["no_temperature"], budget={"steps": 2})
    trainer = Trainer(cfg)
    trainer._setup()
    assert not trainer.objective.logit_scale.requires_grad and float(trainer.objective.scale()) == 1.0


def test_stop_then_resume_gives_the_same_next_steps(tmp_path):
    from ssl_studio.engine.control import RunControl

    cfg = tiny(tmp_path, objective={"loss": "siglip"}, data={"num_images": 128}, batch_size=16, budget={"steps": 6})
    straight = []
    Trainer(cfg, callback=straight.append, run_dir=tmp_path / "straight").run()
    control = RunControl()

    def stop_at_3(event):
        if isinstance(event, Step) and event.step == 3:
            control.stop()

    assert Trainer(cfg, callback=stop_at_3, control=control, run_dir=tmp_path / "split").run().status == "stopped"
    second = []
    assert Trainer(cfg, callback=second.append, run_dir=tmp_path / "split", resume=True).run().status == "completed"
    expected = [e.loss for e in straight if isinstance(e, Step)][3:]
    assert [e.loss for e in second if isinstance(e, Step)] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_word_dropout_keeps_order_eot_and_at_least_one_word():
    from ssl_studio.objectives.clip import drop_words

    tok = WordTokenizer.build(CAPTIONS)
    ids = tok.encode(CAPTIONS, 16)
    assert torch.equal(drop_words(ids, 0.0), ids)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = drop_words(ids, 0.6, g)
        for row, orig in zip(out.tolist(), ids.tolist()):
            assert row[0] == SOT_ID and row.count(EOT_ID) == 1
            words = row[1:row.index(EOT_ID)]
            assert words and set(row[row.index(EOT_ID) + 1:]) <= {PAD_ID}
            it = iter(orig)
            assert all(w in it for w in words)  # a subsequence: order kept
