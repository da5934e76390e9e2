"""The recipes chosen by measurement (docs/studies/recipes.md) are what a bare run gets; the papers' stay reachable."""

from ssl_studio.config import config_from_mapping, load_config
from ssl_studio.engine.build import objective_params, resolved_optim
from ssl_studio.objectives.byol import BYOL, BYOLParams
from ssl_studio.presets import presets_dir


def test_byol_on_a_convnet_defaults_to_the_recipe_that_learns_on_photos():
    conv = config_from_mapping({"objective": {"name": "byol"}})  # what `ssl-studio train --objective byol` runs
    assert objective_params(conv).base_momentum == 0.99
    assert resolved_optim(conv) == ("adamw", 2e-3, 1e-4)
    resnet = config_from_mapping({"objective": {"name": "byol"}, "model": {"backbone": "resnet18"}})
    assert objective_params(resnet) == objective_params(conv) and resolved_optim(resnet) == resolved_optim(conv)
    assert BYOL.backbone_recipes["convnet"].why  # the window's recipe note says why
    # the ViT keeps the declared defaults and the LARS recipe
    vit = config_from_mapping({"objective": {"name": "byol"}, "model": {"backbone": "vit"}})
    assert objective_params(vit) == BYOLParams() and resolved_optim(vit) == ("lars", 1.0, 1e-5)
    # the user's values win
    mine = config_from_mapping({"objective": {"name": "byol", "base_momentum": 0.996}, "optim": {"optimizer": "lars", "lr": 0.2}})
    assert objective_params(mine).base_momentum == 0.996 and resolved_optim(mine)[:2] == ("lars", 0.2)
    # the healthy preset runs the recipe
    preset = load_config(presets_dir() / "byol.toml")
    assert objective_params(preset) == objective_params(conv) and resolved_optim(preset) == resolved_optim(conv)


def test_the_paper_presets_hold_the_published_recipes():
    byol = load_config(presets_dir() / "byol-paper.toml")
    p = objective_params(byol)
    assert (p.proj_hidden, p.pred_hidden, p.base_momentum) == (4096, 4096, 0.996)
    assert resolved_optim(byol) == ("lars", 0.2, 1.5e-6)
    simsiam = load_config(presets_dir() / "simsiam-paper.toml")
    assert objective_params(simsiam).proj_dim == 2048 and resolved_optim(simsiam) == ("sgd", 0.03, 5e-4)
    swav = load_config(presets_dir() / "swav-paper.toml")
    assert (objective_params(swav).num_prototypes, objective_params(swav).queue_size) == (3000, 3840)
    dino = load_config(presets_dir() / "dino-paper.toml")
    q = objective_params(dino)
    assert (q.use_bn_in_head, q.base_momentum, q.local_crops) == (False, 0.996, 2)
    assert resolved_optim(dino) == ("adamw", 5e-4, 0.04)
