"""Evaluation protocols against cases whose answer is known, and eval/compare end to end."""

import math

import pytest
import torch

from ssl_studio.cli import main
from ssl_studio.engine.compare import compare_runs, kendall_tau, ranks
from ssl_studio.engine.evaluate import attribute_knn, finetune_protocol, linear_protocol, stratified_subset


def test_linear_probe_recovers_a_linearly_separable_problem():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 4, generator=g)
    x = torch.randn(1200, 16, generator=g)
    y = (x @ w).argmax(1)
    result = linear_protocol(x[:1000], y[:1000], x[1000:], y[1000:], num_classes=4)
    assert result["top1"] > 0.97
    assert result["weight_decay"] in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2) and result["seconds"] >= 0


def test_label_fractions_are_stratified_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    sub = stratified_subset(labels, 0.1, seed=3)
    assert len(sub) == 100
    assert torch.bincount(labels[sub]).tolist() == [10] * 10
    assert torch.equal(sub, stratified_subset(labels, 0.1, seed=3))
    assert not torch.equal(sub, stratified_subset(labels, 0.1, seed=4))
    assert torch.bincount(labels[stratified_subset(labels, 0.001)]).tolist() == [1] * 10  # at least one per class


def test_finetuning_improves_over_the_frozen_probe_on_a_small_case():
    from ssl_studio.config import AugmentConfig, DataConfig, ModelConfig
    from ssl_studio.data import load_imageset
    from ssl_studio.data.views import ViewMaker
    from ssl_studio.engine.evaluate import embed_images
    from ssl_studio.models import build_backbone

    data = load_imageset(DataConfig(source="digits", resolution=16), seed=0)
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(width=8), 16)
    views = ViewMaker(AugmentConfig(), 16, data.mean, data.std)
    backbone.eval()
    tr = embed_images(backbone, data.images[data.train_index], views.plain)
    va = embed_images(backbone, data.images[data.val_index], views.plain)
    frozen = linear_protocol(tr, data.labels[data.train_index], va, data.labels[data.val_index], 10)["top1"]
    tuned = finetune_protocol(backbone, views, data.images, data.labels, data.train_index, data.val_index, 10, epochs=5,
                              batch_size=64, lr=0.1, backbone_lr_scale=1.0)
    assert tuned["top1"] > frozen + 0.02, (tuned["top1"], frozen)
    # the run's own weights are untouched
    assert torch.equal(embed_images(backbone, data.images[data.val_index], views.plain), va)


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair out of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # tau-b with a tie (scipy.stats.kendalltau([1, 2, 2, 3], [1, 2, 3, 4]) = 0.9128709)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9128709, abs=1e-6)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert ranks([0.5, 0.9, None, 0.5]) == [2, 1, None, 2]


def test_eval_and_compare_end_to_end_on_two_tiny_runs(tmp_path, capsys):
    common = ["--data", "shapes", "--steps", "4", "--batch-size", "16", "--set", "data.num_images=160", "--set", "model.width=8",
              "--set", "probe.size=32", "--set", "probe.every=0", "--precision", "float32", "--quiet", "--out", str(tmp_path)]
    assert main(["train", "--objective", "simclr", "--name", "a", *common]) == 0
    assert main(["train", "--objective", "supervised", "--name", "b", *common]) == 0
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    for run in runs:
        assert main(["eval", str(run), "--protocols", "knn,linear,finetune", "--finetune-epochs", "0.5"]) == 0
        assert (run / "report.md").read_text().count("|") > 10
        assert "k-NN@20 on colour" in (run / "report.md").read_text()  # shapes records attributes; eval reports them with k-NN
    capsys.readouterr()
    assert main(["compare", *map(str, runs), "--csv", str(tmp_path / "cmp.csv")]) == 0
    out = capsys.readouterr().out
    assert "Kendall's tau" in out and "finetune" in out and "#1" in out
    assert (tmp_path / "cmp.csv").read_text().startswith("run,")
    comparison = compare_runs(runs)
    assert set(comparison.protocols) >= {"knn", "linear", "finetune"}


def test_baselines_rebuild_the_initial_backbone_and_read_raw_pixels(tmp_path):
    """The reference rows a run has to beat: its own network at step 0, and pixels."""
    import json

    from ssl_studio.engine.evaluate import embed_images, evaluate_run, knn_protocol, load_trained

    args = ["train", "--objective", "simclr", "--data", "digits", "--steps", "3", "--batch-size", "32", "--set", "model.width=8",
            "--set", "probe.size=64", "--set", "probe.every=0", "--precision", "float32", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    result = evaluate_run(run, ("baselines", "knn"))["baselines"]
    assert set(result["init"]) == {"k5", "k20", "linear"} and set(result["pixels"]) == {"k5", "k20"}
    assert result["pixels"]["k20"] > 0.85  # handwritten digits are close to separable in pixel space
    # the initial network is the one the run started from (same seed), not the trained one
    cfg, data, trained, views, dev, _, _ = load_trained(run, "cpu")
    feats = [embed_images(trained.embed, data.images[i], views.plain) for i in (data.train_index, data.val_index)]
    trained_knn = knn_protocol(feats[0], data.labels[data.train_index], feats[1], data.labels[data.val_index], data.num_classes)
    assert result["init"]["k20"] != pytest.approx(trained_knn["k20"], abs=1e-9) or result["init"]["k5"] != pytest.approx(trained_knn["k5"], abs=1e-9)
    assert first["event"] == "started"
    from ssl_studio.engine.evaluate import report_markdown

    text = report_markdown(run)
    assert "backbone at initialisation" in text and "raw pixels" in text


def test_fractions_reuse_the_full_protocols_for_all_labels(tmp_path, monkeypatch):
    """The 100 % row is the linear probe and fine-tuning on every label: measured once, not twice."""
    import ssl_studio.engine.evaluate as evaluate

    args = ["train", "--objective", "simclr", "--data", "digits", "--steps", "3", "--batch-size", "32", "--set", "model.width=8",
            "--set", "probe.every=0", "--precision", "float32", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    calls = []
    real = evaluate.finetune_protocol
    monkeypatch.setattr(evaluate, "finetune_protocol", lambda *a, **k: calls.append(len(a[4])) or real(*a, **k))
    both = evaluate.evaluate_run(run, ("linear", "finetune", "fractions"), finetune_epochs=0.5)
    full = both["fractions"]["fractions"]["1"]
    assert full["linear"] == both["linear"]["top1"] and full["finetune"] == both["finetune"]["top1"]
    n_train = full["labels"]
    assert calls.count(n_train) == 1 and len(calls) == 3  # finetune once on all labels, then 1 % and 10 % only
    calls.clear()
    alone = evaluate.evaluate_run(run, ("fractions",), finetune_epochs=0.5)
    assert calls.count(n_train) == 1 and alone["fractions"]["fractions"]["1"]["finetune"] == pytest.approx(full["finetune"], abs=0.05)


def test_finetuning_keeps_the_runs_whole_object_crops():
    """A run trained on crops that keep 85 % of the image is fine-tuned on crops at least that whole."""
    from ssl_studio.config import AugmentConfig, DataConfig, ModelConfig
    from ssl_studio.data import load_imageset
    from ssl_studio.data.views import ViewMaker
    from ssl_studio.models import build_backbone

    data = load_imageset(DataConfig(source="digits", resolution=16), seed=0)
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(width=8), 16)
    whole = ViewMaker(AugmentConfig(crop_scale_min=0.85), 16, data.mean, data.std)
    ordinary = ViewMaker(AugmentConfig(), 16, data.mean, data.std)
    index = data.train_index[:64]
    kept = finetune_protocol(backbone, whole, data.images, data.labels, index, data.val_index[:32], 10, epochs=1, min_steps=1)
    light = finetune_protocol(backbone, ordinary, data.images, data.labels, index, data.val_index[:32], 10, epochs=1, min_steps=1)
    assert kept["crop_scale_min"] == pytest.approx(0.85) and light["crop_scale_min"] == pytest.approx(0.5)
    assert "BatchNorm" in kept["head"]


def test_initial_objective_is_the_network_a_run_starts_from_whatever_the_generator_state():
    """References "at initialisation" must not depend on what ran before them in the process."""
    from ssl_studio.config import config_from_mapping
    from ssl_studio.engine.build import build_objective, initial_objective, load_data

    cfg = config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": "digits"}, "model": {"width": 8}, "seed": 3})
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)  # what the trainer does before it builds
    started = build_objective(cfg, data).state_dict()
    torch.rand(1000)  # a study has trained other runs since
    state = torch.get_rng_state()
    rebuilt = initial_objective(cfg, data).state_dict()
    assert started.keys() == rebuilt.keys()
    assert all(torch.equal(started[k], rebuilt[k]) for k in started)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    other = initial_objective(config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": "digits"}, "model": {"width": 8}, "seed": 4}), data)
    assert not all(torch.equal(started[k], v) for k, v in other.state_dict().items() if v.is_floating_point())


def test_attribute_knn_reads_what_the_feature_encodes():
    """A feature made of the colour alone: k-NN finds the colour, the background stays at chance, the label's rename is left out."""
    g = torch.Generator().manual_seed(0)
    n = 400
    colour = torch.randint(4, (n,), generator=g)
    background = torch.randint(3, (n,), generator=g)
    labels = torch.randint(5, (n,), generator=g)
    features = torch.nn.functional.one_hot(colour, 4).float() + 0.01 * torch.randn(n, 4, generator=g)
    attributes = {"colour": [f"c{c}" for c in colour.tolist()], "background": [f"b{b}" for b in background.tolist()],
                  "shape": [f"s{y}" for y in labels.tolist()]}
    train, val = torch.arange(300), torch.arange(300, n)
    out = attribute_knn(features[train], features[val], attributes, train, val, labels=labels)
    assert set(out["attributes"]) == {"colour", "background"}  # "shape" only renames the labels
    assert out["attributes"]["colour"]["k20"] == 1.0
    bg = out["attributes"]["background"]
    assert bg["values"] == 3 and abs(bg["k20"] - 1 / 3) < 0.15 and bg["chance"] >= 1 / 3
    assert attribute_knn(features[train], features[val], None, train, val) is None
