"""The zero-shot panel fed with synthetic events and a hand-built scorer (no training), offscreen."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ssl_studio.engine.events import Evaluated, Probe, Started, Visuals  # noqa: E402
from ssl_studio.gui.panels.zeroshot_panel import ZeroShotPanel, ensemble, probabilities  # noqa: E402

CLASSES = ["circle", "square", "triangle"]
AXES = {"circle": 0, "square": 1, "triangle": 2, "red": 3}


class Scorer:
    """A text embeds as the sum of the unit axes of the words it knows (4-D), normalised."""

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 4), np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                if w in AXES:
                    out[i, AXES[w]] += 1
            if not out[i].any():
                out[i] = 0.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def unknown_words(self, text):
        return [w for w in text.split() if w not in AXES and w not in ("a", "of", "photo")]


class FakeImageSet:
    def __init__(self, n=40):
        self.images = torch.randint(0, 255, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        self.labels = torch.arange(n) % 3
        self.class_names = CLASSES
        self.captions = [f"a {CLASSES[i % 3]}" for i in range(n)]


def image_embeddings(n=6):
    """Probe image i points along class axis i % 3 (and image 5 also along 'red')."""
    e = np.zeros((n, 4), np.float32)
    e[np.arange(n), np.arange(n) % 3] = 1.0
    e[5, 3] = 1.0
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def visuals(step=10, scale=10.0):
    scorer = Scorer()
    cls = ensemble(scorer, CLASSES, ["a {}"])
    return Visuals(step=step, kind="zeroshot", arrays={"image_embeddings": image_embeddings(), "class_embeddings": cls},
                   info={"kind": "clip", "logit_scale": scale, "logit_bias": None, "class_names": CLASSES, "templates": ["a {}"]})


def started():
    return Started(run_dir="run", objective="clip", data="shapes", backbone="convnet", device="cpu", precision="float32",
                   channels_last=False, num_train=100, num_probe=6, feature_dim=4, parameters=1000, flops_per_image=1,
                   total_steps=100, steps_per_epoch=10, batch_size=32, class_names=CLASSES)


def probe_event():
    return Probe(step=10, effective_rank=1.0, mean_cosine=0.1, dim_std=0.1, knn_acc=None, feature_dim=4,
                 spectrum=np.ones(4, np.float32), points2d=np.zeros((6, 2), np.float32), labels=np.arange(6) % 3,
                 indices=np.arange(6) + 20, features=image_embeddings())


@pytest.fixture
def panel(qtbot):
    p = ZeroShotPanel()
    qtbot.addWidget(p)
    p.set_imageset(FakeImageSet())
    p.resize(900, 600)
    return p


def test_probabilities_match_the_engine():
    from ssl_studio.objectives.clip import zeroshot_probabilities

    img, cls = image_embeddings(), ensemble(Scorer(), CLASSES, ["a {}", "a photo of a {}"])
    for kind, bias in (("clip", None), ("siglip", -3.0)):
        ours = probabilities(img, cls, 7.0, bias, kind)
        theirs = zeroshot_probabilities(torch.from_numpy(img), torch.from_numpy(cls), 7.0, bias, kind).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_live_top3_from_visuals_events(panel):
    panel.handle_events([started(), probe_event(), visuals()])
    assert panel.class_lines() == CLASSES and panel.template_lines() == ["a {}"]
    top = panel.top_predictions(2)
    assert [name for name, _ in top] == ["triangle", "circle", "square"] and top[0][1] > 0.9
    assert sum(p for _, p in top) == pytest.approx(1.0)
    assert panel.cells[0].isVisibleTo(panel) and not panel.cells[6].isVisibleTo(panel)
    assert "circle" in panel.cells[0].text.text()
    header, rows = panel.table()
    assert header[:3] == ["cell", "image_index", "true_class"] and rows[0][1] == 20 and rows[0][3] == "circle"


def test_editing_prompts_rescores_without_retraining(panel, qtbot):
    scorer = Scorer()
    panel.handle_events([started(), probe_event(), visuals()])
    panel.set_scorer(scorer)
    before = panel.probs.copy()
    # a new class list: "red" now names probe image 5's extra axis
    panel.set_prompts(class_names=["circle", "square", "triangle", "red"])
    assert panel.probs.shape == (6, 4) and panel.scored_names[-1] == "red"
    assert not np.allclose(panel.probs[:, :3], before)
    top5 = panel.top_predictions(5)
    assert [n for n, _ in top5[:2]] == ["triangle", "red"] and top5[0][1] == pytest.approx(top5[1][1])  # on both axes: a tie
    # typing in the template editor re-scores after a short pause
    calls = scorer.calls
    panel.template_edit.setPlainText("a photo of a {}\na {}\nhexagon {}")
    qtbot.waitUntil(lambda: scorer.calls > calls, timeout=2000)
    assert "hexagon" in panel.prompt_note.text()  # words outside the vocabulary are named
    assert "your prompts" in panel.status.text()


def test_edits_without_a_scorer_say_what_is_missing(panel):
    panel.handle_events([visuals()])
    panel.set_prompts(class_names=["circle", "square", "hexagon"])
    assert "text encoder" in panel.prompt_note.text()
    assert panel.probs is not None and panel.probs.shape == (6, 3)  # the run's own prompts still score


def test_caption_search_ranks_probe_images(panel):
    panel.handle_events([started(), probe_event(), visuals()])
    assert panel.search("a square") == []  # no scorer: nothing to rank
    assert "text encoder" in panel.search_note.text()
    panel.set_scorer(Scorer())
    ranking = panel.search("a red triangle")
    assert ranking[0][0] == 5  # the only image on both axes
    assert panel.search_cells[0].isVisibleTo(panel) and panel.search_cells[0].toolTip() == "a square"  # image #25's caption


def test_confusion_matrix_from_an_evaluated_event_and_cell_images(panel, tmp_path):
    report = {"top1": 0.5, "class_names": CLASSES, "confusion": [[2, 1, 0], [0, 1, 0], [0, 0, 0]],
              "indices": [3, 4, 5, 6], "labels": [0, 0, 0, 1], "predictions": [0, 1, 0, 1], "seen": 0.6, "unseen": 0.2,
              "attributes": {"colour": {"top1": 0.9, "chance": 0.1}, "shape": {"top1": 0.5, "chance": 1 / 3}}}
    panel.handle_events([Evaluated(step=10, results={"knn": {}, "zeroshot": report})])
    assert panel.confusion.shape == (3, 3) and "unseen pairs 0.200" in panel.plot.titleLabel.text
    assert "colour 0.90 (chance 0.10)" in panel.attribute_label.text() and "shape 0.50" in panel.attribute_label.text()
    assert panel.select_cell(0, 0) == [3, 5]
    assert "circle predicted as circle: 2 images" in panel.cell_caption.text()
    assert panel.select_cell(0, 1) == [4] and panel.cell_images[0].isVisibleTo(panel)
    import json

    (tmp_path / "report.json").write_text(json.dumps({"zeroshot": report}))
    panel.clear()
    panel.load_report(tmp_path)
    assert panel.confusion.sum() == 4
    panel.export_png(tmp_path / "zs.png")
    panel.export_csv(tmp_path / "zs.csv")
    assert (tmp_path / "zs.png").stat().st_size > 0


def test_the_panel_follows_a_real_clip_objective(panel):
    """A TextScorer bound to an untrained objective: the panel re-scores through its CPU copy."""
    from ssl_studio.config import ModelConfig
    from ssl_studio.engine.zeroshot import TextScorer
    from ssl_studio.models import build_backbone
    from ssl_studio.objectives import ObjectiveContext
    from ssl_studio.objectives.clip import CLIP

    torch.manual_seed(0)
    obj = CLIP(build_backbone(ModelConfig(width=8), 16), CLIP.parse_params({"text_layers": 1, "text_width": 32, "embed_dim": 16}),
               ObjectiveContext(image_size=16, num_classes=3, class_names=CLASSES,
                                captions=["a red circle", "a blue square", "a green triangle"]))
    out = obj.visuals(torch.randn(6, 3, 16, 16))["zeroshot"]
    arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    info = {k: v for k, v in out.items() if not isinstance(v, np.ndarray)}
    panel.handle_events([Visuals(step=1, kind="zeroshot", arrays=arrays, info=info)])
    np.testing.assert_allclose(panel.probs, out["probabilities"], rtol=1e-4, atol=1e-6)
    panel.set_scorer(TextScorer(obj))
    np.testing.assert_allclose(panel.probs, out["probabilities"], rtol=1e-4, atol=1e-6)  # same prompts, same scores
    panel.set_prompts(templates=["a red {}"])
    assert not np.allclose(panel.probs, out["probabilities"])
