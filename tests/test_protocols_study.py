import json

from ssl_studio.cli import main


def test_protocols_study_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    argv = ["study", "protocols", "--methods", "simclr,supervised", "--steps", "3", "--out", str(tmp_path),
            "--protocols", "knn,linear,finetune", "--finetune-epochs", "0.2",
            "--set", "data.num_images=160", "--set", "batch_size=16", "--set", "model.width=8", "--set", "probe.every=0",
            "--set", "probe.size=32", "--set", "precision=\"float32\""]
    assert main(argv) == 0
    (study,) = [p for p in tmp_path.iterdir() if p.name.endswith("-protocols")]
    table = (study / "table.md").read_text()
    assert "simclr" in table and "supervised" in table and "Kendall's tau" in table
    data = json.loads((study / "study.json").read_text())
    assert data["methods"] == ["simclr", "supervised"]
    assert set(data["scores"]) >= {"knn", "linear", "finetune"}
    assert (study / "figure.png").stat().st_size > 1000
    assert len(list((study / "runs").iterdir())) == 2
