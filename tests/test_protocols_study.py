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


TINY = ["--set", "data.num_images=160", "--set", "batch_size=16", "--set", "model.width=8", "--set", "probe.every=0",
        "--set", "probe.size=32", "--set", "precision=\"float32\""]


def test_the_study_sets_each_method_against_its_network_at_initialisation_and_can_be_evaluated_again(tmp_path):
    argv = ["study", "protocols", "--methods", "simclr,byol", "--steps", "3", "--out", str(tmp_path),
            "--protocols", "knn,linear,finetune", "--finetune-epochs", "0.2", *TINY]
    assert main(argv) == 0
    (study,) = [p for p in tmp_path.iterdir() if p.name.endswith("-protocols")]
    data = json.loads((study / "study.json").read_text())
    # both ConvNets start from the same seeded weights: one set of references, measured once
    (ref,) = data["references"]
    assert ref["methods"] == ["simclr", "byol"] and ref["backbone"] == "convnet"
    assert 0.0 <= ref["init_knn"] <= 1.0 and 0.0 <= ref["scratch"] <= 1.0
    table = (study / "table.md").read_text()
    assert "Against the same network at initialisation" in table
    assert f"| simclr | convnet | {data['scores']['knn'][0]:.3f} | {data['scores']['knn'][0] - ref['init_knn']:+.3f} |" in table

    # --from trains nothing and evaluates only what the reports lack
    runs = sorted((study / "runs").iterdir())
    before = {r.name: (r / "report.json").read_text() for r in runs}
    assert main(["study", "protocols", "--from", str(study), "--protocols", "knn,linear,finetune,fractions",
                 "--finetune-epochs", "0.2"]) == 0
    assert sorted((study / "runs").iterdir()) == runs
    for r in runs:
        report = json.loads((r / "report.json").read_text())
        assert "fractions" in report
        assert report["knn"] == json.loads(before[r.name])["knn"]  # kept, not measured again
    assert "linear@1%" in json.loads((study / "study.json").read_text())["scores"]

    # fine-tuning from scratch starts from the untrained network: BYOL's trained weights differ from
    # SimCLR's, yet the two runs' scratch scores are one, at the fine-tuning budget
    from ssl_studio.engine.evaluate import evaluate_run

    # (both measured here, under one thread count: a float sum split over another count may flip one of 16 images)
    simclr_run, byol_run = (next(r for r in runs if r.name.endswith(f"-{m}")) for m in ("simclr", "byol"))
    first = evaluate_run(simclr_run, ("scratch",), finetune_epochs=0.2)
    again = evaluate_run(byol_run, ("finetune", "scratch"), finetune_epochs=0.2)
    assert again["scratch"]["top1"] == first["scratch"]["top1"]
    assert again["scratch"]["steps"] == again["finetune"]["steps"]


def test_from_names_a_folder_without_runs(tmp_path, capsys):
    assert main(["study", "protocols", "--from", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "runs/" in err and str(tmp_path) in err
