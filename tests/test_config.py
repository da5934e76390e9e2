import pytest

from ssl_studio.config import RunConfig, config_from_mapping, config_to_mapping, load_config, save_config
from ssl_studio.params import ConfigError


def test_defaults_validate_and_round_trip_through_toml(tmp_path):
    cfg = config_from_mapping({"objective": {"name": "simclr", "temperature": 0.3}, "budget": {"steps": 5}, "ablations": ["no_projector"]})
    save_config(cfg, tmp_path / "c.toml")
    again = load_config(tmp_path / "c.toml")
    assert config_to_mapping(again) == config_to_mapping(cfg)
    assert again.objective.params == {"temperature": 0.3}
    assert again.budget.steps == 5 and again.budget.minutes is None


@pytest.mark.parametrize("mapping, message", [
    ({"objective": {"name": "simclr", "temperature": -1}}, "objective.temperature must be > 0, got -1"),
    ({"objective": {"name": "nope"}}, "objective.name must be one of"),
    ({"batch_size": 1}, "batch_size must be >= 2, got 1"),
    ({"data": {"resolution": "big"}}, "data.resolution must be an integer"),
    ({"data": {"colour": 1}}, "data.colour is not a known setting"),
    ({"objective": {"name": "simclr", "tempreature": 0.1}}, "objective.tempreature is not a known setting"),
    ({"model": {"backbone": "vgg"}}, "model.backbone must be one of convnet, resnet18, vit"),
    ({"budget": {"steps": 3, "minutes": 2}}, "budget must set only one of"),
    ({"ablations": ["no_predictor"]}, "does not apply to simclr"),
    ({"ablations": ["no_such_thing"]}, "unknown switch"),
    ({"data": {"source": "imagenet"}}, "data.source must be shapes, digits, folder:PATH, cifar:PATH or text:PATH"),
    ({"augment": {"crop_scale_min": 0.9, "crop_scale_max": 0.5}}, "augment.crop_scale_min must be <="),
])
def test_validation_names_the_field(mapping, message):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(mapping)
    assert message in str(info.value)


def test_load_config_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("objective = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_every_preset_loads():
    from ssl_studio.presets import list_presets

    presets = list_presets()
    assert any(p.name == "simclr" for p in presets)
    for p in presets:
        assert isinstance(load_config(p.path), RunConfig), p.name
        assert p.description, f"preset {p.name} needs a description"


def test_the_colour_mix_preset_is_simclr_with_every_view_recoloured():
    import dataclasses

    from ssl_studio.presets import list_presets

    paths = {p.name: p.path for p in list_presets()}
    mixed, plain = load_config(paths["simclr-colour-mix"]), load_config(paths["simclr"])
    assert mixed.augment.colour_mix_p == 1.0 and plain.augment.colour_mix_p == 0.0
    assert dataclasses.replace(mixed, augment=dataclasses.replace(mixed.augment, colour_mix_p=0.0)) == plain
    # its ViT twin: the same recipe on the ViT, with the time its attention needs to find the object
    vit = load_config(paths["simclr-vit-colour-mix"])
    assert vit.model.backbone == "vit" and vit.budget.minutes == 45
    assert dataclasses.replace(vit, model=mixed.model, budget=mixed.budget) == mixed


def test_dino_vit_grey_background_preset_is_dino_vit_on_one_grey_background():
    import dataclasses

    from ssl_studio.presets import list_presets

    paths = {p.name: p.path for p in list_presets()}
    grey, vit = load_config(paths["dino-vit-grey-background"]), load_config(paths["dino-vit"])
    assert grey.data.backgrounds == ["plain"] and grey.data.fixed_background and grey.budget.minutes == 10
    assert dataclasses.replace(grey, data=vit.data, budget=vit.budget) == vit
