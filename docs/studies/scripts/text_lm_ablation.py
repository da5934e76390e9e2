"""Ablations of the text LMs (docs/studies/text-lm.md): one run in-process, read under five sentence embeddings.

The lab's data, network, objectives, perplexity protocol, linear probe and k-NN, with a plain
AdamW loop (linear warm-up, cosine; --lr is the absolute rate, not per 256 windows), so that many
variants run cheaply.  Prints one JSON line; features go to /tmp/tt/feats/TAG.pt for
text_probe_soundness.py.  Run from the repository root:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python docs/studies/scripts/text_lm_ablation.py --objective masked-lm --steps 300 --lr 2e-3
"""
import argparse, json, math, sys, time
import torch, torch.nn.functional as F
from ssl_studio.config import config_from_mapping
from ssl_studio.engine.build import load_data, initial_objective
from ssl_studio.engine.evaluate import knn_protocol, linear_protocol
from ssl_studio.engine.text_eval import perplexity_protocol
from ssl_studio.engine import diagnostics
from ssl_studio.data.text import TokenViews
from ssl_studio.objectives.base import Batch

p = argparse.ArgumentParser()
p.add_argument("--objective", default="masked-lm")
p.add_argument("--steps", type=int, default=300)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)  # absolute
p.add_argument("--warmup", type=float, default=0.05)
p.add_argument("--ctx", type=int, default=32)
p.add_argument("--width", type=int, default=0)
p.add_argument("--depth", type=int, default=0)
p.add_argument("--mask-rate", type=float, default=0.15)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--wd", type=float, default=0.01)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--bf16", type=int, default=1)
p.add_argument("--tag", default="")
p.add_argument("--save", default="")
p.add_argument("--init-only", action="store_true")
p.add_argument("--no-ppl", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
m = {"objective": {"name": a.objective}, "data": {"source": "text:builtin", "resolution": a.ctx}, "seed": a.seed,
     "model": {"width": a.width, "depth": a.depth}}
if a.objective == "masked-lm":
    m["objective"]["mask_rate"] = a.mask_rate
cfg = config_from_mapping(m)
data = load_data(cfg)
obj = initial_objective(cfg, data)
X = data.images
tr, va = data.train_index, data.val_index
ytr, yva = data.labels[tr], data.labels[va]
causal = obj.causal

def embeds(model, which):
    """dict pooling-name -> (train, val) features."""
    bb = model.backbone
    out = {}
    model.eval()
    with torch.no_grad():
        for split, idx in (("tr", tr), ("va", va)):
            acc = {}
            for s in range(0, len(idx), 512):
                t = X[idx[s:s+512]]
                x = bb.token_embedding(t) + bb.pos_embed[: t.shape[1]]
                layers = []
                for blk in bb.blocks:
                    x = blk(x, causal)
                    layers.append(x)
                fin = bb.ln_final(x)
                n = len(layers)
                feats = {"final_mean": fin.mean(1), "mid_mean": F.layer_norm(layers[n // 2 - 1], layers[0].shape[-1:]).mean(1),
                         "final_last": fin[:, -1], "layers_mean": torch.stack([F.layer_norm(l, l.shape[-1:]) for l in layers]).mean(0).mean(1),
                         "emb_mean": bb.token_embedding(t).mean(1)}
                for k, v in feats.items():
                    acc.setdefault(k, []).append(v.float())
            for k, v in acc.items():
                out.setdefault(k, {})[split] = torch.cat(v)
    return out

FEATS = {}
FEATS_DIR = "/tmp/tt/feats"
import os
os.makedirs(FEATS_DIR, exist_ok=True)
def evaluate(model, tag="trained"):
    res = {}
    if not a.no_ppl:
        ppl = perplexity_protocol(model, data, torch.device("cpu"))
        res["ppl"] = ppl["perplexity"]; res["unigram"] = ppl["unigram"]; res["pseudo"] = ppl["scores"].get("pseudo")
    E = embeds(model, None)
    FEATS[tag] = {k: v for k, v in E.items() if k in ("final_mean", "mid_mean", "emb_mean")}
    for k, d in E.items():
        lin = linear_protocol(d["tr"], ytr, d["va"], yva, data.num_classes, seed=a.seed)["top1"]
        knn = knn_protocol(d["tr"], ytr, d["va"], yva, data.num_classes)["k20"]
        res[k] = (round(lin, 3), round(knn, 3))
    return res

t0 = time.time()
out = {"args": vars(a), "n_train": len(tr), "n_val": len(va)}
if a.init_only:
    out["init"] = evaluate(obj, "init")
    torch.save({"feats": FEATS, "ytr": ytr, "yva": yva}, f"{FEATS_DIR}/{a.tag or 'x'}.pt")
    print(json.dumps(out)); sys.exit()
obj.train()
opt = torch.optim.AdamW(obj.parameters(), lr=a.lr, weight_decay=a.wd, betas=(0.9, 0.95) if False else (0.9, 0.999))
g = torch.Generator().manual_seed(a.seed)
warm = max(1, int(a.warmup * a.steps))
losses = []
perm = torch.randperm(len(tr), generator=g); pos = 0
tstart = time.time()
for step in range(a.steps):
    lr = a.lr * (step + 1) / warm if step < warm else a.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, a.steps - warm)))
    for gr in opt.param_groups: gr["lr"] = lr
    if pos + a.batch > len(perm):
        perm = torch.randperm(len(tr), generator=g); pos = 0
    idx = tr[perm[pos:pos + a.batch]]; pos += a.batch
    b = Batch(views=[X[idx]], images=X[idx], indices=idx)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
        o = obj.training_step(b, step / a.steps)
    opt.zero_grad(set_to_none=True)
    o.loss.backward()
    opt.step()
    losses.append(float(o.loss.detach()))
out["train_s"] = time.time() - tstart
out["loss_first_last"] = (round(sum(losses[:10]) / 10, 3), round(sum(losses[-20:]) / 20, 3))
out["trained"] = evaluate(obj)
out["eval_s"] = time.time() - tstart - out["train_s"]
torch.save({"feats": FEATS, "ytr": ytr, "yva": yva}, f"{FEATS_DIR}/{a.tag or 'x'}.pt")
if a.save:
    torch.save(obj.state_dict(), a.save)
print(json.dumps(out))
