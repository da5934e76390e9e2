"""Evaluation protocols: k-NN, linear probe, fine-tuning, label fractions.

Frozen protocols embed with the objective's ``embed`` (backbone features) on
un-augmented images; fine-tuning trains a *copy* of the backbone.  No protocol
touches the run's own weights or checkpoint.  Each protocol reports its
accuracy, its own configuration and its cost in seconds, because the point of
comparing protocols is that they can rank the same runs differently.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ssl_studio.config import AugmentConfig
from ssl_studio.data.views import ViewMaker
from ssl_studio.engine.build import initial_objective
from ssl_studio.engine.device import pick_precision
from ssl_studio.engine.runs import RunFolder
from ssl_studio.engine.trained import load_trained
from ssl_studio.engine.zeroshot import zeroshot_protocol
from ssl_studio.params import ConfigError

KNN_TEMPERATURE = 0.1  # the weighting used by the reference numbers in shared/data/README.md


EMBED_BATCH = 512  # images per forward pass when embedding a set


@torch.no_grad()
def embed_images(embed: Callable[[torch.Tensor], torch.Tensor], images_uint8: torch.Tensor, to_input: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int = EMBED_BATCH, device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Features of uint8 images, batched, on ``device``; returned as float32 on the CPU."""
    out = []
    device = torch.device(device)
    for start in range(0, len(images_uint8), batch_size):
        x = to_input(images_uint8[start:start + batch_size].to(device, non_blocking=True))
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                f = embed(x)
        else:
            f = embed(x)
        out.append(f.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor, k: int = 20,
                temperature: float = KNN_TEMPERATURE, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN (Wu et al. 2018, §3.4): cosine neighbours vote with weight exp(sim / t)."""
    if len(train_features) == 0:
        raise ValueError("k-NN needs at least one labelled training image")
    num_classes = int(num_classes or int(train_labels.max()) + 1)
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    preds = []
    for start in range(0, len(query_features), chunk):
        q = F.normalize(query_features[start:start + chunk].float(), dim=1)
        sim = q @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_features, train_labels, query_features, query_labels, k: int = 20, temperature: float = KNN_TEMPERATURE,
                 num_classes: int | None = None) -> float:
    pred = knn_predict(train_features, train_labels, query_features, k=k, temperature=temperature, num_classes=num_classes)
    return float((pred == query_labels).float().mean())


def knn_protocol(train_features, train_labels, val_features, val_labels, num_classes: int, ks=(5, 20)) -> dict:
    """The k-NN protocol as reported in report.json: one accuracy per k, its settings and its cost."""
    t0 = time.perf_counter()
    result = {f"k{k}": knn_accuracy(train_features, train_labels, val_features, val_labels, k=k, num_classes=num_classes) for k in ks}
    result.update({"temperature": KNN_TEMPERATURE, "metric": "cosine", "train_images": len(train_features),
                   "val_images": len(val_features), "seconds": time.perf_counter() - t0})
    return result


def attribute_knn(train_features, val_features, attributes: dict[str, list] | None, train_index, val_index,
                  labels: torch.Tensor | None = None, k: int = 20) -> dict | None:
    """k-NN@k accuracy for every per-image attribute the data set records, beside chance for each.

    What a representation encodes besides its labels: on shapes (colour, size, position,
    background) a feature can score at chance on the shape and high on the object's colour,
    which says it met its objective with colour.  Chance is the share of the commonest value
    among the held-out images.  An attribute that merely renames ``labels`` (shapes' "shape")
    is left out: the k-NN protocol already reports it.  ``None`` without attributes.
    """
    if not attributes:
        return None
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    train_index, val_index = torch.as_tensor(train_index), torch.as_tensor(val_index)
    label_list = labels.tolist() if labels is not None else None
    num_labels = len(set(label_list)) if label_list is not None else 0
    for name, values in attributes.items():
        names = sorted(set(values))
        lookup = {v: i for i, v in enumerate(names)}
        codes = torch.tensor([lookup[v] for v in values])
        if label_list is not None and len(label_list) == len(codes):
            if len(set(zip(codes.tolist(), label_list))) == len(names) == num_labels:  # a one-to-one renaming
                continue
        y_train, y_val = codes[train_index], codes[val_index]
        out[name] = {f"k{k}": knn_accuracy(train_features, y_train, val_features, y_val, k=k, num_classes=len(names)),
                     "chance": float(torch.bincount(y_val, minlength=len(names)).max()) / max(1, len(y_val)), "values": len(names)}
    return {"attributes": out, "k": k, "seconds": time.perf_counter() - t0} if out else None


class Cancelled(Exception):
    """Raised inside a protocol when the caller's ``should_stop`` says so (the GUI's Cancel)."""


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int = 0, min_per_class: int = 1) -> torch.Tensor:
    """Positions of a seeded subset keeping ``fraction`` of every class (at least ``min_per_class``)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        n = max(min_per_class, int(round(fraction * len(members))))
        picked.append(members[torch.randperm(len(members), generator=g)[: min(n, len(members))]])
    return torch.cat(picked).sort().values


def standardise(train: torch.Tensor, *others: torch.Tensor):
    """Features centred and scaled by the training rows' statistics (a single row is only centred: its std is undefined)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp_min(1e-6) if len(train) > 1 else torch.ones_like(mean)
    return [(x - mean) / std for x in (train, *others)]


def fit_linear(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int = 100) -> torch.nn.Linear:
    """Multinomial logistic regression to convergence with full-batch L-BFGS (features already standardised)."""
    model = torch.nn.Linear(features.shape[1], num_classes)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")
    x, y = features.float(), labels

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x.float()).argmax(1) == y).float().mean())


LINEAR_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def linear_protocol(train_features, train_labels, val_features, val_labels, num_classes: int, seed: int = 0,
                    weight_decays=LINEAR_WEIGHT_DECAYS) -> dict:
    """Linear probe: standardised frozen features, weight decay chosen on a held-out 10 % of the training set."""
    t0 = time.perf_counter()
    tr, va = standardise(train_features.float(), val_features.float())
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(tr), generator=g)
    n_hold = max(1, len(tr) // 10) if len(tr) >= 20 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    scores = {}
    if n_hold:
        for wd in weight_decays:
            scores[wd] = _accuracy(fit_linear(tr[fit], train_labels[fit], num_classes, wd), tr[hold], train_labels[hold])
        best = max(scores, key=lambda wd: (scores[wd], wd))  # ties: the stronger regulariser
    else:
        best = 1e-4
    model = fit_linear(tr, train_labels, num_classes, best)
    return {"top1": _accuracy(model, va, val_labels), "weight_decay": best, "sweep": {f"{k:g}": v for k, v in scores.items()},
            "optimizer": "L-BFGS, full batch, standardised features", "train_images": len(tr), "val_images": len(va),
            "seconds": time.perf_counter() - t0}


def finetune_protocol(backbone: torch.nn.Module, views, images: torch.Tensor, labels: torch.Tensor, train_index: torch.Tensor,
                      val_index: torch.Tensor, num_classes: int, epochs: float = 3.0, batch_size: int = 128, lr: float = 0.05,
                      backbone_lr_scale: float = 0.1, min_steps: int = 40, device="cpu", autocast_dtype=None, seed: int = 0,
                      should_stop: Callable[[], bool] | None = None, progress: Callable[[float], None] | None = None) -> dict:
    """Fine-tuning: a copy of the backbone and a fresh linear head trained together (SGD, cosine),
    the backbone at a tenth of the head's learning rate so that the pre-trained features are adapted, not erased.

    The head reads the features through a BatchNorm without affine parameters (as MAE's
    linear probing does, He et al. 2022, appendix A.2): backbones end at very different
    feature scales, and a head on raw features spends a few-epoch budget finding the scale
    (the linear probe standardises its features for the same reason).  The crops are light
    (scale 0.5-1, flips) unless the run itself kept more of each image: a data set whose
    signal is the whole object (shapes asks for 0.85) is fine-tuned on crops that keep it.
    """

    t0 = time.perf_counter()
    device = torch.device(device)
    model = copy.deepcopy(backbone).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):  # the head's draw is the seed's, not whatever ran before in this process
        torch.manual_seed(seed)
        head = torch.nn.Sequential(torch.nn.BatchNorm1d(model.feature_dim, affine=False), torch.nn.Linear(model.feature_dim, num_classes)).to(device)
    # light augmentation, as in the fine-tuning protocols of SimCLR and MAE: crops and flips only
    crop_min = max(0.5, views.cfg.crop_scale_min)
    light = ViewMaker(AugmentConfig(crop_scale_min=crop_min, jitter_p=0.0, grayscale_p=0.0), views.out_size, views.mean, views.std)
    batch_size = max(2, min(batch_size, len(train_index)))
    steps_per_epoch = max(1, len(train_index) // batch_size)
    total = max(min_steps, int(math.ceil(epochs * steps_per_epoch)))
    opt = torch.optim.SGD([{"params": model.parameters(), "lr": lr * backbone_lr_scale, "base": lr * backbone_lr_scale},
                           {"params": head.parameters(), "lr": lr, "base": lr}], momentum=0.9, weight_decay=5e-4, nesterov=True)
    g = torch.Generator().manual_seed(seed)
    vg = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed + 1)
    order, pos = train_index[torch.randperm(len(train_index), generator=g)], 0
    model.train()
    head.train()
    for step in range(total):
        if should_stop is not None and should_stop():
            raise Cancelled()
        if pos + batch_size > len(order):
            order, pos = train_index[torch.randperm(len(train_index), generator=g)], 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        for group in opt.param_groups:
            group["lr"] = group["base"] * 0.5 * (1 + math.cos(math.pi * step / total))
        x = light(images[idx].to(device), 1, 0, vg)[0]
        y = labels[idx].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = head(model(x))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress((step + 1) / total)
    model.eval()
    head.eval()
    feats = embed_images(model, images[val_index], light.plain, device=device, autocast_dtype=autocast_dtype)
    with torch.no_grad():
        acc = float((head(feats.to(device)).argmax(1).cpu() == labels[val_index]).float().mean())
    return {"top1": acc, "epochs": total / steps_per_epoch, "steps": total, "batch_size": batch_size, "lr_head": lr,
            "lr_backbone": lr * backbone_lr_scale, "optimizer": "SGD nesterov, cosine, crops+flips", "crop_scale_min": crop_min,
            "head": "BatchNorm (no affine) + linear", "train_images": len(train_index),
            "val_images": len(val_index), "seconds": time.perf_counter() - t0}


PROTOCOLS = ("knn", "linear", "finetune", "fractions", "zeroshot", "baselines", "scratch", "perplexity")
TEXT_PROTOCOLS = ("knn", "linear", "perplexity")  # what a text run can be evaluated by (the others train on or compare with images)
LABEL_FRACTIONS = (0.01, 0.1, 1.0)


def evaluate_run(run_dir, protocols=("knn",), device: str = "auto", progress: Callable[[str, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, finetune_epochs: float = 3.0, skip_unlabelled: bool = False) -> dict:
    """Evaluate a run's last checkpoint by each protocol and merge the results into its report.json.

    ``skip_unlabelled`` leaves out the protocols that need labels when the data has none, instead of
    refusing (the CLI's default protocols for a text run, whose own text may come without classes).

    ``progress(protocol, fraction)`` reports as it goes; ``should_stop()`` returning True cancels
    (raises ``Cancelled``) without writing a partial protocol.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError("protocols", f"has unknown protocol {unknown[0]!r} (known: {', '.join(PROTOCOLS)})")
    cfg, data, objective, views, dev, folder, step = load_trained(run_dir, device)
    if len(data.val_index) == 0:
        raise ConfigError("data.val_fraction", f"is 0 for {cfg.data.source!r}, so no images were held out to evaluate on; "
                                                "train with data.val_fraction above 0")
    image_only = [p for p in protocols if p not in TEXT_PROTOCOLS] if data.modality == "text" else []
    if image_only:
        raise ConfigError("protocols", f"has {image_only[0]!r}, which evaluates image runs; a text run is evaluated by "
                                       f"{', '.join(TEXT_PROTOCOLS)}")
    if "perplexity" in protocols and data.modality != "text":
        raise ConfigError("protocols", f"has 'perplexity', which scores text runs, but this run trained on {cfg.data.source!r}")
    needs_labels = [p for p in protocols if p not in ("zeroshot", "perplexity")]  # zero-shot falls back to retrieval on captions
    if data.labels is None and needs_labels and skip_unlabelled and len(needs_labels) < len(protocols):
        protocols = [p for p in protocols if p not in needs_labels]
        needs_labels = []
    if data.labels is None and needs_labels and data.modality == "text":
        raise ConfigError("protocols", f"has {', '.join(needs_labels)}, which need labels, but {cfg.data.source!r} has none (its .txt "
                                       "files are not in class sub-folders); evaluate it by perplexity, or train on a folder with one "
                                       "sub-folder of .txt files per class")
    if data.labels is None and needs_labels and data.only_class is not None:
        raise ConfigError("data.source", f"{cfg.data.source!r} has only one class ({data.only_class}), so it cannot be evaluated by "
                                         f"{', '.join(needs_labels)}: telling classes apart needs at least 2, and every score on one "
                                         "class is 1.000; add a sub-folder of images for each further class")
    if data.labels is None and needs_labels:
        raise ConfigError("data.source", f"{cfg.data.source!r} has no labels, so it cannot be evaluated by {', '.join(needs_labels)}"
                                         " (only zeroshot, for image-text runs on captioned images, works without labels)")
    if "zeroshot" in protocols and data.labels is None and data.captions is None:
        raise ConfigError("data.source", f"{cfg.data.source!r} has neither class labels nor captions, so zeroshot has nothing to "
                                         "match images against; add captions.csv or class sub-folders")
    autocast_dtype = pick_precision(cfg.precision, dev)
    results: dict = {"step": step}
    if needs_labels:
        train_feats = embed_images(objective.embed, data.images[data.train_index], views.plain, device=dev, autocast_dtype=autocast_dtype)
        val_feats = embed_images(objective.embed, data.images[data.val_index], views.plain, device=dev, autocast_dtype=autocast_dtype)
        y_train, y_val = data.labels[data.train_index], data.labels[data.val_index]

    def finetune(index, share_of_progress=(0.0, 1.0)):
        lo, hi = share_of_progress
        return finetune_protocol(objective.backbone, views, data.images, data.labels, index, data.val_index, data.num_classes,
                                 epochs=finetune_epochs, device=dev, autocast_dtype=autocast_dtype, seed=cfg.seed, should_stop=should_stop,
                                 progress=(lambda f: progress("finetune", lo + (hi - lo) * f)) if progress else None)

    for name in protocols:
        if should_stop is not None and should_stop():
            raise Cancelled()
        if progress:
            progress(name, 0.0)
        if name == "knn":
            results[name] = knn_protocol(train_feats, y_train, val_feats, y_val, data.num_classes)
            encoded = attribute_knn(train_feats, val_feats, data.attributes, data.train_index, data.val_index, labels=data.labels)
            if encoded is not None:  # what the feature encodes besides the class, in the same pass
                results["attributes"] = encoded
                folder.write_report("attributes", encoded)
        elif name == "linear":
            results[name] = linear_protocol(train_feats, y_train, val_feats, y_val, data.num_classes, seed=cfg.seed)
        elif name == "finetune":
            results[name] = finetune(data.train_index)
        elif name == "fractions":
            t0 = time.perf_counter()
            table = {}
            for i, fraction in enumerate(LABEL_FRACTIONS):
                sub = stratified_subset(y_train, fraction, seed=cfg.seed)
                share = (i / len(LABEL_FRACTIONS), (i + 1) / len(LABEL_FRACTIONS))
                if fraction == 1.0 and "linear" in results and "finetune" in results:
                    # All the labels: the same seeded fits as the full protocols just measured; run neither twice.
                    lin, ft = results["linear"], results["finetune"]
                else:
                    lin = linear_protocol(train_feats[sub], y_train[sub], val_feats, y_val, data.num_classes, seed=cfg.seed)
                    ft = finetune(data.train_index[sub], share)
                table[f"{fraction:g}"] = {"labels": len(sub), "linear": lin["top1"], "finetune": ft["top1"]}
            results[name] = {"fractions": table, "seconds": time.perf_counter() - t0}
        elif name == "baselines":
            results[name] = baselines_protocol(cfg, data, views, dev, autocast_dtype)
        elif name == "scratch":
            initial = initial_objective(cfg, data)
            results[name] = finetune_protocol(initial.backbone, views, data.images, data.labels, data.train_index, data.val_index,
                                              data.num_classes, epochs=finetune_epochs, device=dev, autocast_dtype=autocast_dtype,
                                              seed=cfg.seed, should_stop=should_stop,
                                              progress=(lambda f: progress("scratch", f)) if progress else None)
        elif name == "perplexity":
            from ssl_studio.engine.text_eval import perplexity_protocol

            results[name] = perplexity_protocol(objective, data, dev, autocast_dtype=autocast_dtype)
        elif name == "zeroshot":
            if not objective.has_text_tower:
                raise ConfigError("protocols", f"zeroshot needs an image-text objective (clip), but this run trained {cfg.objective.name}")
            results[name] = zeroshot_protocol(objective, data, views, dev, held_out=cfg.data.held_out, autocast_dtype=autocast_dtype)
        if progress:
            progress(name, 1.0)
        folder.write_report(name, results[name])
    return results


def baselines_protocol(cfg, data, views, device, autocast_dtype=None) -> dict:
    """What training has to beat: the same backbone at initialisation, and raw pixels.

    The initial backbone is rebuilt from the run's own config and seed
    (``initial_objective``), so it is exactly the network the run started from;
    a random ConvNet is a strong k-NN feature on small images, which is why
    "better than raw pixels" is not enough.  Pixels are the normalised,
    flattened images.  k-NN (k = 5, 20) and the linear probe,
    with the same settings as the trained run's.
    """
    t0 = time.perf_counter()
    initial = initial_objective(cfg, data).to(device).eval()
    y_train, y_val = data.labels[data.train_index], data.labels[data.val_index]
    train_x, val_x = data.images[data.train_index], data.images[data.val_index]
    f_train = embed_images(initial.embed, train_x, views.plain, device=device, autocast_dtype=autocast_dtype)
    f_val = embed_images(initial.embed, val_x, views.plain, device=device, autocast_dtype=autocast_dtype)
    knn_init = knn_protocol(f_train, y_train, f_val, y_val, data.num_classes)
    lin_init = linear_protocol(f_train, y_train, f_val, y_val, data.num_classes, seed=cfg.seed)
    flat = lambda x: views.plain(x).flatten(1)  # noqa: E731
    p_train = embed_images(flat, train_x, lambda x: x, device=device)
    p_val = embed_images(flat, val_x, lambda x: x, device=device)
    knn_pix = knn_protocol(p_train, y_train, p_val, y_val, data.num_classes)
    return {"init": {"k5": knn_init["k5"], "k20": knn_init["k20"], "linear": lin_init["top1"]},
            "pixels": {"k5": knn_pix["k5"], "k20": knn_pix["k20"]},
            "train_images": len(train_x), "val_images": len(val_x), "seconds": time.perf_counter() - t0}


def report_markdown(run_dir) -> str:
    """report.json as a Markdown table: one row per protocol with its accuracy, settings and cost."""
    report = RunFolder(run_dir, create=False).read_report()
    lines = ["| protocol | accuracy | settings | seconds |", "|---|---:|---|---:|"]
    if "knn" in report:
        r = report["knn"]
        lines.append(f"| k-NN (k=5 / k=20) | {r['k5']:.3f} / {r['k20']:.3f} | cosine, t={r['temperature']} | {r['seconds']:.1f} |")
    if "linear" in report:
        r = report["linear"]
        lines.append(f"| linear probe | {r['top1']:.3f} | weight decay {r['weight_decay']:g} (chosen on 10 % of train) | {r['seconds']:.1f} |")
    if "attributes" in report:
        k = report["attributes"]["k"]
        for name, a in report["attributes"]["attributes"].items():
            lines.append(f"| k-NN@{k} on {name} | {a[f'k{k}']:.3f} | {a['values']} values, chance {a['chance']:.3f} | |")
    if "finetune" in report:
        r = report["finetune"]
        lines.append(f"| fine-tuning | {r['top1']:.3f} | {r['epochs']:.1f} epochs, lr {r['lr_head']:g} head / {r['lr_backbone']:g} backbone | {r['seconds']:.1f} |")
    if "fractions" in report:
        for frac, r in report["fractions"]["fractions"].items():
            lines.append(f"| {float(frac) * 100:g} % labels ({r['labels']}) | linear {r['linear']:.3f} / fine-tune {r['finetune']:.3f} | | |")
    if "zeroshot" in report:
        r = report["zeroshot"]
        if r.get("top1") is not None:
            lines.append(f"| zero-shot | {r['top1']:.3f} | {r.get('prompts', '')} | {r.get('seconds', 0):.1f} |")
        if r.get("recall"):  # with captions, also without labels
            rec = r["recall"]
            lines.append(f"| retrieval R@1 / R@5 | image->text {rec['image_to_text']['r1']:.3f} / {rec['image_to_text']['r5']:.3f}, "
                         f"text->image {rec['text_to_image']['r1']:.3f} / {rec['text_to_image']['r5']:.3f} | "
                         f"{rec['pairs']} held-out pairs | {r.get('seconds', 0):.1f} |")
    if "perplexity" in report:
        r = report["perplexity"]
        others = ", ".join(f"{k} {v:.1f}" for k, v in r["scores"].items() if k != r["score"])
        lines.append(f"| held-out perplexity ({r['score']}) | {r['perplexity']:.1f} | {r['tokens']} continuation tokens; unigram "
                     f"{r['unigram']:.1f}{'; ' + others if others else ''} | {r.get('seconds', 0):.1f} |")
    if "scratch" in report:
        r = report["scratch"]
        lines.append(f"| baseline: fine-tuning from initialisation | {r['top1']:.3f} | the same network untrained, "
                     f"{r['epochs']:.1f} epochs as above | {r['seconds']:.1f} |")
    if "baselines" in report:
        r = report["baselines"]
        lines.append(f"| baseline: backbone at initialisation | k-NN {r['init']['k5']:.3f} / {r['init']['k20']:.3f}, linear {r['init']['linear']:.3f} "
                     f"| same seed, same protocols | {r['seconds']:.1f} |")
        lines.append(f"| baseline: raw pixels | k-NN {r['pixels']['k5']:.3f} / {r['pixels']['k20']:.3f} | normalised, flattened | |")
    return "\n".join(lines) + "\n"
