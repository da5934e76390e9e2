"""The papers' recipes stay reachable as presets beside the lab's defaults (docs/studies/recipes.md)."""

from ssl_studio.config import load_config
from ssl_studio.engine.build import objective_params, resolved_optim
from ssl_studio.presets import presets_dir


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
    mae = load_config(presets_dir() / "mae-paper.toml")
    m = objective_params(mae)
    assert (m.decoder_dim, m.decoder_depth, m.decoder_heads) == (512, 8, 16) and resolved_optim(mae) == ("adamw", 1.5e-4, 0.05)
    assert mae.model.backbone == "vit"
