import json

from ssl_studio.cli import main
from ssl_studio.studies.recipes import paper_mapping, recipe_methods, write_study


def test_recipes_study_end_to_end_on_a_tiny_budget(tmp_path):
    argv = ["study", "recipes", "--methods", "byol", "--steps", "2", "--out", str(tmp_path),
            "--set", "data.num_images=160", "--set", "batch_size=16", "--set", "model.width=8", "--set", "probe.every=0",
            "--set", "probe.size=32", "--set", "precision=\"float32\""]
    assert main(argv) == 0
    (study,) = [p for p in tmp_path.iterdir() if p.name.endswith("-recipes")]
    data = json.loads((study / "study.json").read_text())
    rows = {r["method"]: r for r in data["methods"]}
    assert set(rows) == {"byol"}
    assert {"init", "paper", "recipe"} <= set(rows["byol"])  # BYOL's default differs from its paper's recipe
    for which in ("init", "paper", "recipe"):
        assert 0.0 <= rows["byol"][which]["knn"] <= 1.0 and 0.0 <= rows["byol"][which]["linear"] <= 1.0
    assert "| byol |" in (study / "table.md").read_text()
    assert (study / "figure.png").stat().st_size > 1000
    assert len(list((study / "runs").iterdir())) == 2  # BYOL's recipe and its paper's


def test_a_method_whose_default_is_its_papers_gets_a_dash_not_a_second_run(tmp_path):
    meta = {"data": "shapes", "budget": {"steps": 2}, "methods": [
        {"method": "simclr", "backbone": "convnet", "init": {"knn": 0.2, "linear": 0.3}, "recipe": {"knn": 0.5, "linear": 0.6},
         "pixels_knn": 0.25}]}
    write_study(tmp_path, meta)
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| simclr"))
    assert row.split("|")[3].strip() == "-" and "+0.300" in row
    assert (tmp_path / "figure.png").stat().st_size > 1000


def test_recipes_study_refuses_an_unknown_or_supervised_method(capsys):
    assert main(["study", "recipes", "--methods", "supervised", "--steps", "1"]) == 2
    assert "--methods" in capsys.readouterr().err
    assert "supervised" not in recipe_methods()


def test_paper_presets_are_their_methods():
    for name in recipe_methods():
        mapping = paper_mapping(name)
        if mapping is not None:
            assert mapping["objective"]["name"] == name
