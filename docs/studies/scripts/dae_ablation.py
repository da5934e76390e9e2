"""A denoising-AE run through the CLI, then read beside the same network at initialisation (docs/studies/dae.md).

k-NN@20 and the linear probe of the trained and the initial backbone (same seed, same build), and
the reconstruction errors of both (``DenoisingAE.reconstruction_errors`` on 256 held-out images).
Run from the repository root, one thread:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/studies/scripts/dae_ablation.py NAME STEPS --data shapes --batch-size 128 [--set ...]
"""
import json, sys, time
from pathlib import Path
import torch
from ssl_studio.cli import main
from ssl_studio.engine.runs import RunFolder
from ssl_studio.engine.build import build_views, initial_objective, load_data
from ssl_studio.engine.evaluate import embed_images, knn_protocol, linear_protocol

name, steps, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
out = Path("/tmp/tt/dae") / name
torch.set_num_threads(1)
t0 = time.time()
rc = main(["train", "--objective", "denoising-ae", "--steps", steps, "--out", str(out), "--quiet", "--set", "workers=1",
           "--set", "probe.every=0", "--set", "probe.visuals_every=0"] + rest)
run = next(p for p in out.iterdir() if p.is_dir())
folder = RunFolder(run, create=False)
cfg = folder.read_config()
rep = folder.read_report()
data = load_data(cfg)
views = build_views(cfg, data)
res = {"name": name, "rc": rc, "args": rest, "steps": steps, "wall": time.time() - t0}
res["summary"] = {k: rep.get(k) for k in ("knn", "linear")}
trained = initial_objective(cfg, data)
trained.load_state_dict(folder.load_checkpoint()["objective"])
init = initial_objective(cfg, data)
x = views.plain(data.images[data.val_index[:256]])
for label, obj in (("trained", trained), ("init", init)):
    obj.eval()
    res[label + "_recon"] = obj.reconstruction_errors(x, torch.Generator().manual_seed(0))
with torch.no_grad():
    ytr, yva = data.labels[data.train_index], data.labels[data.val_index]
    for label, obj in (("trained", trained), ("init", init)):
        ftr = embed_images(obj.backbone, data.images[data.train_index], views.plain)
        fva = embed_images(obj.backbone, data.images[data.val_index], views.plain)
        res[label + "_knn20"] = knn_protocol(ftr, ytr, fva, yva, data.num_classes)["k20"]
        res[label + "_linear"] = linear_protocol(ftr, ytr, fva, yva, data.num_classes, seed=cfg.seed)["top1"]
print(json.dumps(res, default=str))
