"""Starting a run from another run's trained backbone (``model.init_from``): weights, teachers, refusals."""

import shutil

import pytest
import torch

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.build import build_objective, load_data
from ssl_studio.engine.evaluate import evaluate_run
from ssl_studio.engine.events import Started
from ssl_studio.engine.runs import RunFolder
from ssl_studio.engine.trainer import Trainer
from ssl_studio.params import ConfigError


def cfg_for(tmp_path, objective="mae", backbone="vit", width=16, steps=3, **model):
    return config_from_mapping({
        "objective": {"name": objective},
        "data": {"source": "shapes", "num_images": 256},
        "model": {"backbone": backbone, "width": width, **model},
        "batch_size": 32,
        "budget": {"steps": steps},
        "probe": {"every": 100, "size": 32},
        "precision": "float32",
        "out": str(tmp_path),
    })


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    """A finished 3-step MAE run on a width-16 ViT: the source of the weights."""
    out = tmp_path_factory.mktemp("source")
    result = Trainer(cfg_for(out)).run()
    assert result.status == "completed"
    return result.run_dir


def trained_backbone(run_dir):
    ckpt = RunFolder(run_dir, create=False).load_checkpoint()
    return {k[len("backbone."):]: v for k, v in ckpt["objective"].items() if k.startswith("backbone.")}


def test_dino_starts_from_the_mae_encoder_and_its_teacher_copies_it(tmp_path, mae_run):
    cfg = cfg_for(tmp_path, objective="dino")
    cfg.model.init_from = str(mae_run)
    data = load_data(cfg)
    torch.manual_seed(0)
    objective = build_objective(cfg, data)
    source = trained_backbone(mae_run)
    for name, value in objective.backbone.state_dict().items():
        assert torch.equal(value, source[name]), name
    for name, value in objective.teacher_backbone.state_dict().items():
        assert torch.equal(value, source[name]), name
    # and not what the seed alone builds: the random ViT differs from the MAE encoder
    cfg.model.init_from = ""
    torch.manual_seed(0)
    fresh = build_objective(cfg, data)
    assert not torch.equal(fresh.backbone.state_dict()["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])


def test_a_run_from_another_run_trains_and_records_where_it_started(tmp_path, mae_run):
    cfg = cfg_for(tmp_path, objective="dino", steps=2)
    cfg.model.init_from = str(mae_run)
    started = []
    result = Trainer(cfg, callback=lambda e: started.append(e) if isinstance(e, Started) else None).run()
    assert result.status == "completed" and started[0].resumed_from_step == 0
    assert RunFolder(result.run_dir, create=False).read_config().model.init_from == str(mae_run)


def test_evaluating_a_warm_started_run_does_not_need_its_source(tmp_path, mae_run):
    source_copy = tmp_path / "source-copy"
    shutil.copytree(mae_run, source_copy)
    cfg = cfg_for(tmp_path / "runs", objective="dino", steps=2)
    cfg.model.init_from = str(source_copy)
    result = Trainer(cfg).run()
    shutil.rmtree(source_copy)
    # the run's own checkpoint holds its weights: evaluating it neither reads nor needs the source run
    report = evaluate_run(result.run_dir, protocols=("knn",))
    assert "knn" in report


@pytest.mark.parametrize("change, message", [
    ({"width": 8}, "model.width = 16 but this run has 8"),
    ({"registers": 2}, "model.registers = 0 but this run has 2"),
    ({"depth": 2}, "model.depth = 6 but this run has 2"),  # the source said nothing: the ViT's default
    ({"backbone": "convnet"}, "model.backbone = 'vit' but this run has 'convnet'"),
])
def test_a_backbone_that_does_not_match_is_refused_naming_the_setting(tmp_path, mae_run, change, message):
    settings = {"backbone": "vit", "width": 16, **change}
    cfg = cfg_for(tmp_path, objective="simclr", **settings)
    cfg.model.init_from = str(mae_run)
    with pytest.raises(ConfigError) as info:
        build_objective(cfg, load_data(cfg))
    assert info.value.field == "model.init_from"
    assert message in str(info.value)


def test_a_folder_that_is_not_a_run_or_has_no_checkpoint_is_refused(tmp_path, mae_run):
    cfg = cfg_for(tmp_path, objective="dino")
    data = load_data(cfg)
    cfg.model.init_from = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is not a run folder"):
        build_objective(cfg, data)
    no_checkpoint = tmp_path / "no-checkpoint"
    shutil.copytree(mae_run, no_checkpoint)
    (no_checkpoint / "checkpoints" / "last.pt").unlink()
    cfg.model.init_from = str(no_checkpoint)
    with pytest.raises(ConfigError, match="no checkpoint") as info:
        build_objective(cfg, data)
    assert info.value.field == "model.init_from"


def test_the_field_is_validated_by_the_cli_before_training(tmp_path, capsys):
    from ssl_studio.cli import main

    code = main(["train", "--preset", "mae", "--steps", "1", "--out", str(tmp_path), "--quiet",
                 "--set", f"model.init_from={tmp_path / 'missing'}"])
    assert code != 0
    err = capsys.readouterr().err
    assert "model.init_from" in err and "Traceback" not in err
