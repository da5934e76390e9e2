"""How far to trust a text probe number: the linear probe under three seeds (its weight-decay hold-out),
the bootstrap standard error of its accuracy over the held-out windows, and k-NN at k = 5, 20, 50,
on features saved by text_lm_ablation.py (arguments: their tags)."""
import sys, torch, json
from ssl_studio.engine.evaluate import linear_protocol, knn_accuracy, fit_linear, standardise, _accuracy
torch.set_num_threads(1)
res = {}
for f in sys.argv[1:]:
    d = torch.load(f"/tmp/tt/feats/{f}.pt")
    ytr, yva = d["ytr"], d["yva"]
    for tag, feats in d["feats"].items():
        for pool in ("final_mean", "mid_mean"):
            tr, va = feats[pool]["tr"], feats[pool]["va"]
            seeds = [linear_protocol(tr, ytr, va, yva, 6, seed=s)["top1"] for s in range(3)]
            # bootstrap SE of the accuracy of one fitted probe over the val windows
            lp = linear_protocol(tr, ytr, va, yva, 6, seed=0)
            a, b = standardise(tr.float(), va.float())
            model = fit_linear(a, ytr, 6, lp["weight_decay"])
            with torch.no_grad():
                correct = (model(b).argmax(1) == yva).float()
            g = torch.Generator().manual_seed(0)
            boots = torch.stack([correct[torch.randint(len(correct), (len(correct),), generator=g)].mean() for _ in range(500)])
            knn = {k: round(knn_accuracy(tr, ytr, va, yva, k=k, num_classes=6), 3) for k in (5, 20, 50)}
            res[f"{f}/{tag}/{pool}"] = {"linear_seeds": [round(x, 3) for x in seeds], "wd": lp["weight_decay"], "boot_se": round(float(boots.std()), 3), "knn": knn}
            torch.save(correct, f"/tmp/tt/feats/{f}-{tag}-{pool}-correct.pt")
print(json.dumps(res, indent=0))
