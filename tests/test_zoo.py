"""The joint-embedding zoo: every objective learns, its momentum/queue/centre updates are exact,
and every ablation switch changes the computation it declares."""

from __future__ import annotations

import copy
import dataclasses
import tomllib

import pytest
import torch

from ssl_studio.config import ABLATIONS, ModelConfig, config_from_mapping, load_config
from ssl_studio.models import build_backbone
from ssl_studio.objectives import FAMILIES, Batch, ObjectiveContext, all_objectives, base
from ssl_studio.objectives import byol as byol_mod
from ssl_studio.objectives import dino as dino_mod
from ssl_studio.objectives import simsiam as simsiam_mod
from ssl_studio.objectives.losses import dino_center_update
from ssl_studio.presets import list_presets

ZOO = ("mocov2", "mocov3", "byol", "simsiam", "swav", "dino", "barlow", "vicreg")
FAILURES = ("representational collapse", "dimensional collapse", "slower learning", "none")


pytestmark = pytest.mark.usefixtures("one_thread")


def make(name, ablations=(), backbone="convnet", width=16, **params):
    cls = all_objectives()[name]
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone=backbone, width=width), 32)
    return cls(bb, cls.parse_params(params), ObjectiveContext(image_size=32, ablations=frozenset(ablations), batch_size=32))


@pytest.fixture(scope="module")
def shapes_views():
    """One fixed batch of augmented views of tiny shapes images, reused by every step."""
    from ssl_studio.config import AugmentConfig, DataConfig
    from ssl_studio.data import load_imageset
    from ssl_studio.data.views import ViewMaker

    data = load_imageset(DataConfig(source="shapes", num_images=64), seed=0)
    vm = ViewMaker(AugmentConfig(), data.resolution, data.mean, data.std)
    images = data.images[:32]
    g = torch.Generator().manual_seed(0)
    return images, vm(images, 2, 2, g)


def fixed_batch(obj, shapes_views):
    images, views = shapes_views
    n = obj.num_global_views + obj.num_local_views
    return Batch(views=views[:n], images=images, indices=torch.arange(len(images)))


# -- declarations ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ZOO)
def test_declarations(name):
    cls = all_objectives()[name]
    assert cls.family in FAMILIES
    assert cls.description.count("\n") == 1
    assert cls.honours <= set(ABLATIONS)
    assert not cls.honours & base.ENGINE_ABLATIONS  # the engine's own switches are added by it, not declared
    assert {"no_augmentation", "tiny_batch"} <= cls.ablation_switches()
    assert cls.recipe.optimizer in ("sgd", "lars", "adamw")


# -- learning ------------------------------------------------------------------------

# A fixed batch, plain SGD at a small rate: the loss of every method must fall on data it sees again.
LEARN = {
    "mocov2": dict(queue_size=0),  # a queue filled with this very batch's keys makes positives look like negatives
    "mocov3": {}, "byol": {}, "simsiam": {}, "swav": dict(freeze_prototypes=0.0),
    # DINO's loss is the teacher's entropy plus a KL; the entropy rises early in training as centring flattens
    # the teacher, so the loss of a real run first climbs towards log K.  With the teacher and the centre held
    # still the loss is a plain distillation to fixed targets and must fall.
    "dino": dict(base_momentum=1.0, center_momentum=1.0), "barlow": {}, "vicreg": {},
}


@pytest.mark.parametrize("name", ZOO)
def test_loss_is_finite_and_falls_on_a_fixed_batch(name, shapes_views):
    obj = make(name, **LEARN[name])
    batch = fixed_batch(obj, shapes_views)
    opt = torch.optim.Adam([p for p in obj.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    steps = 10
    for step in range(steps):
        # progress held at mid-budget: DINO's teacher temperature warm-up raises its loss's floor (the
        # target entropy) while it runs, which would hide the fall this test looks for
        out = obj.training_step(batch, 0.5)
        assert torch.isfinite(out.loss), (name, step, out.loss)
        for v in out.metrics.values():
            assert torch.isfinite(torch.as_tensor(float(v)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(0.5)
        losses.append(out.loss.item())
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, (name, losses)
    z = obj.projector_embed(batch.views[0])
    assert z is not None and z.shape[0] == 32


@pytest.mark.parametrize("name", ["dino", "mocov3"])
def test_vit_backbone_with_multicrop(name, shapes_views):
    obj = make(name, backbone="vit", width=8)
    out = obj.training_step(fixed_batch(obj, shapes_views), 0.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_dino_attention_visuals_only_for_vit(shapes_views):
    _, views = shapes_views
    assert make("dino").visuals(views[0][:4]) is None
    vis = make("dino", backbone="vit", width=8).visuals(views[0][:4])
    maps = vis["attention"]["maps"]
    assert maps.shape[0] == 4 and maps.shape[-1] == maps.shape[-2] == vis["attention"]["grid"]


# -- momentum targets, queues, centres ------------------------------------------------

def test_ema_update_exact():
    t, o = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        t.weight.copy_(torch.tensor([[1.0, 2.0]]))
        o.weight.copy_(torch.tensor([[3.0, -2.0]]))
        t.bias.fill_(0.0)
        o.bias.fill_(1.0)
    base.ema_update(t, o, 0.75)
    torch.testing.assert_close(t.weight, torch.tensor([[1.5, 1.0]]))
    torch.testing.assert_close(t.bias, torch.tensor([0.25]))


@pytest.mark.parametrize("name,target,online,momentum", [
    ("byol", "target_backbone", "backbone", lambda p: base.cosine_momentum(0.9, p)),
    ("byol", "target_projector", "projector", lambda p: base.cosine_momentum(0.9, p)),
    ("mocov2", "key_backbone", "backbone", lambda p: 0.99),
    ("mocov3", "key_projector", "projector", lambda p: base.cosine_momentum(0.99, p)),
    ("dino", "teacher_head", "head", lambda p: base.cosine_momentum(0.996, p)),
])
def test_momentum_target_moves_by_exactly_the_expected_amount(name, target, online, momentum, shapes_views):
    obj = make(name)
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1)
    out = obj.training_step(fixed_batch(obj, shapes_views), 0.3)
    opt.zero_grad()
    out.loss.backward()
    opt.step()  # the online network now differs from the target
    before = [p.clone() for p in getattr(obj, target).parameters()]
    online_now = [p.detach().clone() for p in getattr(obj, online).parameters()]
    obj.after_step(0.3)
    m = momentum(0.3)
    for b, o, a in zip(before, online_now, getattr(obj, target).parameters()):
        torch.testing.assert_close(a, m * b + (1 - m) * o)
    assert not any(p.requires_grad for p in getattr(obj, target).parameters())


def test_cosine_momentum_schedule_ends():
    assert base.cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert base.cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert base.cosine_momentum(0.99, 0.5) == pytest.approx(0.995)


def test_moco_queue_wraps_for_any_batch_size():
    obj = make("mocov2", queue_size=10, proj_dim=4)
    assert "queue" in obj.state_dict() and "queue_ptr" in obj.state_dict()
    keys = torch.arange(24, dtype=torch.float32).view(6, 4)
    obj.enqueue(keys)
    obj.enqueue(keys)  # 12 keys into 10 slots: wraps, the pointer stays in range
    assert int(obj.queue_ptr) == 2
    torch.testing.assert_close(obj.queue[:2], keys[4:6])
    torch.testing.assert_close(obj.queue[2:6], keys[2:6])  # left from the first call
    torch.testing.assert_close(obj.queue[6:10], keys[:4])
    obj.enqueue(torch.ones(25, 4))  # more keys than slots: the newest fill the queue
    assert torch.all(obj.queue == 1)


def test_moco_enqueues_both_views_after_the_step(shapes_views):
    obj = make("mocov2", queue_size=100)
    batch = fixed_batch(obj, shapes_views)
    obj.training_step(batch, 0.0)
    obj.after_step(0.0)
    assert int(obj.queue_ptr) == 64
    norms = obj.queue.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_dino_centre_follows_the_batch_mean(shapes_views):
    obj = make("dino")
    batch = fixed_batch(obj, shapes_views)
    for step in range(2):
        old = obj.center.clone()
        obj.training_step(batch, 0.1)
        teacher = [t.clone() for t in obj._pending]
        obj.after_step(0.1)
        expected = 0.9 * old + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
        torch.testing.assert_close(obj.center, expected)
        torch.testing.assert_close(obj.center, dino_center_update(old, teacher, 0.9))
    assert obj.center.abs().sum() > 0


def test_dino_teacher_temperature_warms_up():
    obj = make("dino")
    assert obj.teacher_temperature(0.0) == pytest.approx(0.04)
    assert obj.teacher_temperature(0.15) == pytest.approx(0.055)
    assert obj.teacher_temperature(0.9) == pytest.approx(0.07)


def test_swav_prototypes_frozen_early_and_normalised(shapes_views):
    obj = make("swav", freeze_prototypes=0.05)
    batch = fixed_batch(obj, shapes_views)
    obj.training_step(batch, 0.01).loss.backward()
    assert obj.prototypes.weight.grad is None
    obj.training_step(batch, 0.5).loss.backward()
    assert obj.prototypes.weight.grad is not None and obj.prototypes.weight.grad.abs().sum() > 0
    norms = obj.prototypes.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert obj.num_local_views == 2 and len(batch.views) == 4


def test_swav_queue_fills_then_is_used(shapes_views):
    obj = make("swav", queue_size=40, queue_start=0.0)
    batch = fixed_batch(obj, shapes_views)
    obj.training_step(batch, 0.0)
    obj.after_step(0.0)
    assert int(obj.queue_filled) == 32
    obj.training_step(batch, 0.1)
    obj.after_step(0.1)
    assert int(obj.queue_filled) == 40 and obj.queue.abs().sum() > 0
    out = obj.training_step(batch, 0.2)  # the queue now takes part in the codes
    assert torch.isfinite(out.loss)


# -- ablations -----------------------------------------------------------------------

class Spy:
    """Wraps a loss function and records its arguments."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("module,loss_name,name", [(byol_mod, "byol_regression", "byol"), (simsiam_mod, "negative_cosine", "simsiam")])
def test_no_stop_gradient_lets_gradient_reach_the_target_branch(module, loss_name, name, monkeypatch, shapes_views):
    for ablations, reaches in (((), False), (("no_stop_gradient",), True)):
        spy = Spy(getattr(module, loss_name))
        monkeypatch.setattr(module, loss_name, spy)
        obj = make(name, ablations)
        obj.training_step(fixed_batch(obj, shapes_views), 0.0)
        targets = [args[1] for args, _ in spy.calls]
        assert len(targets) == 2
        assert all(t.requires_grad == reaches for t in targets), (ablations, [t.requires_grad for t in targets])
        if reaches:  # the target branch is built from trainable weights, and its gradient arrives there
            grads = torch.autograd.grad(targets[0].sum(), list(obj.backbone.parameters()), allow_unused=True)
            assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_byol_healthy_target_gets_no_gradient(shapes_views):
    obj = make("byol")
    obj.training_step(fixed_batch(obj, shapes_views), 0.0).loss.backward()
    assert all(p.grad is None for p in obj.target_backbone.parameters())
    assert make("byol", ["no_stop_gradient"]).target_backbone is None  # documented: the target is the online net


@pytest.mark.parametrize("name", ["byol", "simsiam", "mocov3"])
def test_no_predictor_removes_the_predictor(name):
    healthy, ablated = make(name), make(name, ["no_predictor"])
    assert healthy.predictor is not None
    assert ablated.predictor is None
    assert not any("predictor" in n for n, _ in ablated.named_parameters())


@pytest.mark.parametrize("name", ["byol", "dino", "mocov2", "mocov3"])
def test_no_ema_uses_the_online_network(name, shapes_views):
    obj = make(name, ["no_ema"])
    assert not any(n.startswith(("target_", "key_", "teacher_")) for n, _ in obj.named_parameters())
    out = obj.training_step(fixed_batch(obj, shapes_views), 0.0)
    obj.after_step(0.0)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("name,ablation", [("byol", "no_projector"), ("barlow", "no_projector"), ("vicreg", "no_projector"),
                                           ("mocov2", "no_projector"), ("swav", "no_projector")])
def test_no_projector_embeds_backbone_features(name, ablation, shapes_views):
    obj = make(name, [ablation])
    assert obj.projector is None
    x = shapes_views[1][0]
    assert obj.projector_embed(x).shape[1] == obj.backbone.feature_dim
    out = obj.training_step(fixed_batch(obj, shapes_views), 0.0)
    assert torch.isfinite(out.loss)


def test_no_centering_leaves_the_centre_unused(monkeypatch, shapes_views):
    spy = Spy(dino_mod.dino_loss)
    monkeypatch.setattr(dino_mod, "dino_loss", spy)
    obj = make("dino", ["no_centering"])
    batch = fixed_batch(obj, shapes_views)
    for _ in range(2):
        obj.training_step(batch, 0.0)
        obj.after_step(0.0)
    assert torch.all(obj.center == 0)
    assert all(args[2] is None for args, _ in spy.calls)


def test_no_sharpening_sets_teacher_temperature_to_the_students(monkeypatch, shapes_views):
    spy = Spy(dino_mod.dino_loss)
    monkeypatch.setattr(dino_mod, "dino_loss", spy)
    obj = make("dino", ["no_sharpening"])
    for p in (0.0, 0.2, 1.0):
        assert obj.teacher_temperature(p) == obj.params.student_temp
    obj.training_step(fixed_batch(obj, shapes_views), 0.0)
    args = spy.calls[0][0]
    assert args[3] == args[4] == 0.1


def test_vicreg_ablations_drop_their_term(shapes_views):
    for ablation, kept in (("no_variance", ("invariance", "covariance")), ("no_covariance", ("invariance", "variance"))):
        obj = make("vicreg", [ablation])
        out = obj.training_step(fixed_batch(obj, shapes_views), 0.0)
        weights = {"invariance": 25.0, "variance": 25.0, "covariance": 1.0}
        expected = sum(weights[k] * float(out.metrics[k]) for k in kept)
        assert out.loss.item() == pytest.approx(expected, rel=1e-5)
        dropped = ({"invariance", "variance", "covariance"} - set(kept)).pop()
        assert float(out.metrics[dropped]) > 0  # still measured, just not trained on


def test_barlow_no_covariance_keeps_only_the_diagonal(shapes_views):
    obj = make("barlow", ["no_covariance"])
    out = obj.training_step(fixed_batch(obj, shapes_views), 0.0)
    assert out.loss.item() == pytest.approx(float(out.metrics["on_diag"]), rel=1e-5)
    healthy = make("barlow")
    out_h = healthy.training_step(fixed_batch(healthy, shapes_views), 0.0)
    assert out_h.loss.item() == pytest.approx(float(out_h.metrics["on_diag"]) + 5e-3 * float(out_h.metrics["off_diag"]), rel=1e-5)


def test_no_temperature_changes_moco_logits(shapes_views):
    a, b = make("mocov3"), make("mocov3", ["no_temperature"])
    b.load_state_dict(a.state_dict())
    batch = fixed_batch(a, shapes_views)
    torch.manual_seed(1)
    la = a.training_step(batch, 0.0).loss.item()
    torch.manual_seed(1)
    lb = b.training_step(batch, 0.0).loss.item()
    assert la != pytest.approx(lb)


def _trainer(tmp_path, name, ablations, **params):
    from ssl_studio.engine.trainer import Trainer

    cfg = config_from_mapping({"objective": {"name": name, **params}, "data": {"source": "shapes", "num_images": 256}, "model": {"width": 16},
                               "batch_size": 32, "budget": {"steps": 2}, "precision": "float32", "out": str(tmp_path),
                               "ablations": list(ablations)})
    t = Trainer(cfg)
    t._setup()
    return t


def test_no_augmentation_gives_identical_views_and_tiny_batch_16(tmp_path):
    t = _trainer(tmp_path, "byol", ["no_augmentation", "tiny_batch"])
    batch = t._make_batch()
    assert len(batch.views) == 2 and len(batch.views[0]) == 16
    torch.testing.assert_close(batch.views[0], batch.views[1])
    healthy = _trainer(tmp_path, "byol", [])._make_batch()
    assert not torch.allclose(healthy.views[0], healthy.views[1])
    assert len(healthy.views[0]) == 32


def test_no_augmentation_with_local_crops_keeps_the_globals_equal(tmp_path):
    batch = _trainer(tmp_path, "dino", ["no_augmentation"], local_crops=2)._make_batch()  # the ConvNet default has none
    assert len(batch.views) == 4
    torch.testing.assert_close(batch.views[0], batch.views[1])
    assert batch.views[2].shape[-1] == 16


# -- presets -------------------------------------------------------------------------

def test_every_preset_loads_and_pairs_are_consistent():
    presets = {p.name: p for p in list_presets()}
    for name in ZOO:
        assert name in presets and presets[name].group == "healthy"
    broken = [p for p in presets.values() if p.group == "broken"]
    assert {p.name for p in broken} >= {
        "byol-no-stopgrad", "simsiam-no-predictor", "simsiam-no-stopgrad", "simclr-identical-views", "simclr-no-projector",
        "simclr-no-temperature", "dino-no-centering", "dino-no-sharpening", "vicreg-no-variance", "barlow-no-offdiagonal"}
    for p in presets.values():
        cfg = load_config(p.path)
        assert p.expected in FAILURES, (p.name, p.expected)
        header = tomllib.loads(p.path.read_text(encoding="utf-8"))["preset"]
        assert header["title"] and header["description"]
        if p.group == "broken":
            twin = presets[p.twin]
            assert twin.group == "healthy"
            assert cfg.ablations and p.expected != "none"
            twin_cfg = load_config(twin.path)
            assert twin_cfg.objective.name == cfg.objective.name
            # the pair is a controlled experiment: the broken preset is its twin plus the ablations, nothing else
            assert dataclasses.replace(cfg, ablations=twin_cfg.ablations) == twin_cfg, p.name


def test_objective_state_dict_round_trip_covers_buffers():
    a = make("mocov2", queue_size=64)
    a.enqueue(torch.randn(5, 128))
    b = make("mocov2", queue_size=64)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    torch.testing.assert_close(b.queue, a.queue)
    assert int(b.queue_ptr) == 5


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head_gain_is_fixed_or_learned(norm_last_layer, shapes_views):
    """norm_last_layer fixes the weight-normalised last layer's gain at 1 (official ViT-B), else it trains (ViT-S)."""
    obj = make("dino", norm_last_layer=norm_last_layer)
    trainable = {id(p) for g in obj.parameter_groups(0.04) for p in g["params"]}
    assert (id(obj.head.last_g) in trainable) is (not norm_last_layer)
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=1.0)
    obj.training_step(fixed_batch(obj, shapes_views), 0.5).loss.backward()
    opt.step()
    moved = not torch.equal(obj.head.last_g, torch.ones_like(obj.head.last_g))
    assert moved is (not norm_last_layer)


def test_dino_trains_vit_registers_without_decaying_them(shapes_views):
    """Registers are learned positions in the sequence: trained by the loss, kept out of weight decay, copied to the teacher."""
    cls = all_objectives()["dino"]
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone="vit", width=16, registers=2), 32)
    obj = cls(bb, cls.parse_params({}), ObjectiveContext(image_size=32, ablations=frozenset(), batch_size=32))
    groups = obj.parameter_groups(0.04)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    undecayed = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(bb.register_tokens) in undecayed and id(bb.register_tokens) not in decayed
    assert obj.teacher_backbone.register_tokens.shape == (1, 2, bb.embed_dim)
    obj.training_step(fixed_batch(obj, shapes_views), 0.5).loss.backward()
    assert bb.register_tokens.grad is not None and bb.register_tokens.grad.abs().sum() > 0


def test_dino_loads_a_head_saved_before_the_gain_existed():
    old = make("dino").state_dict()
    old = {k: v for k, v in old.items() if not k.endswith("last_g")}
    fresh = make("dino", norm_last_layer=False)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.head.last_g, torch.ones_like(fresh.head.last_g))


def test_multicrop_feeds_vit_local_crops_at_their_own_size():
    """Local crops reach a ViT as 4x4 patch grids (no upsampling); sizes it refuses are resized first."""
    from ssl_studio.objectives.multicrop import forward_crops
    from ssl_studio.models.vit import ViT

    vit = ViT(image_size=32, width=8, depth=1)
    seen: list[int] = []

    def record(x):
        seen.append(x.shape[-1])
        return vit(x)

    views = [torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 18, 18)]
    with torch.no_grad():
        out = forward_crops(record, views, vit)
    assert sorted(seen) == [16, 32, 32]  # 32 px once (the globals together), 16 px as is, 18 px resized to 32
    assert [o.shape for o in out] == [torch.Size([3, vit.embed_dim])] * 4
