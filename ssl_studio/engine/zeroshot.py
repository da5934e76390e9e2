"""Zero-shot evaluation of an image-text model, and the scorer the GUI re-scores prompts with (no Qt).

A CLIP-style model classifies without a classifier: each class becomes a few
sentences ("a picture of a triangle", "a small triangle", ...), their text
embeddings are averaged into one class embedding (prompt ensembling, Radford et
al. 2021, sec. 3.1.4), and an image takes the class whose embedding is nearest.
The protocol reports, on the held-out images:

* zero-shot top-1/top-5 accuracy, per class, and the confusion matrix (rows: true
  class, columns: predicted), with every image's prediction so a panel can show
  the images of any cell;
* image→text and text→image retrieval recall@1/5 among the held-out
  image-caption pairs (a hit is a retrieved caption with the same text: shapes
  captions rarely repeat, class-name captions always do);
* on the shapes set, zero-shot accuracy of every attribute the captions name
  (colour, size, position, background, shape): what the image tower learned to see;
* with ``data.held_out`` colour-shape pairs, accuracy on *seen* combinations
  (held-out images whose pair was trained on) and on *unseen* ones: every image
  of a held-out pair, none of which was ever in a training batch.  The gap is
  the measure of compositional generalisation: a model that learned "red" and
  "triangle" separately names a red triangle it never saw.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ssl_studio.data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, held_out_mask
from ssl_studio.engine.prompts import default_templates
from ssl_studio.engine.trained import load_trained
from ssl_studio.objectives.clip import (class_prompts, class_text_embeddings, fill_template,
                                        zeroshot_probabilities)

RECALL_KS = (1, 5)
MAX_RETRIEVAL = 5000  # retrieval is quadratic in the pairs: the first 5,000 held-out pairs are used
MAX_PREDICTIONS = 20000  # per-image predictions kept in the report (for click-a-cell in the panel)


@torch.no_grad()
def embed_joint(objective, images_uint8: torch.Tensor, views, device, autocast_dtype=None, batch_size: int = 512) -> torch.Tensor:
    """Normalised joint-space embeddings of uint8 images (un-augmented), float32 on the CPU."""
    device = torch.device(device)
    out = []
    objective.eval()
    for start in range(0, len(images_uint8), batch_size):
        x = views.plain(images_uint8[start:start + batch_size].to(device))
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            z = objective.encode_image(x)
        out.append(F.normalize(z.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def embed_texts(objective, texts: Sequence[str], autocast_dtype=None, batch_size: int = 1024) -> torch.Tensor:
    out = []
    device = next(objective.parameters()).device
    for start in range(0, len(texts), batch_size):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            z = objective.encode_text(list(texts[start:start + batch_size]))
        out.append(F.normalize(z.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C×C counts: row = true class, column = predicted class."""
    flat = true.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def recall_at_k(sim: torch.Tensor, query_groups: torch.Tensor, key_groups: torch.Tensor, ks=RECALL_KS) -> dict[str, float]:
    """Share of queries whose top-k keys include one of the same group (the same caption text)."""
    out = {}
    if sim.numel() == 0:
        return {f"r{k}": float("nan") for k in ks}
    k_max = min(max(ks), sim.shape[1])
    top = sim.topk(k_max, dim=1).indices
    hit = key_groups[top] == query_groups[:, None]
    for k in ks:
        out[f"r{k}"] = float(hit[:, : min(k, k_max)].any(1).float().mean())
    return out


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, captions: Sequence[str]) -> dict[str, Any]:
    """Image→text and text→image recall@1/5 of paired, normalised embeddings."""
    groups: dict[str, int] = {}
    gid = torch.tensor([groups.setdefault(c, len(groups)) for c in captions], dtype=torch.int64)
    sim = image_emb.float() @ text_emb.float().T
    n = max(1, len(captions))
    chance = float((torch.bincount(gid, minlength=len(groups))[gid].float() / n).mean()) if len(captions) else 0.0
    return {"image_to_text": recall_at_k(sim, gid, gid), "text_to_image": recall_at_k(sim.T, gid, gid),
            "pairs": len(captions), "distinct_captions": len(groups), "chance_r1": chance}


def shapes_attribute_prompts() -> dict[str, tuple[list[str], list[str], list[str]]]:
    """For each caption attribute of the shapes set: (values, their words in a prompt, templates ensembled over the shapes)."""
    return {
        "colour": (list(COLOURS), list(COLOURS), [f"a {{}} {s}" for s in SHAPES]),
        "size": (list(SIZES), list(SIZES), [f"a {{}} {s}" for s in SHAPES]),
        "position": ([p[0] for p in POSITIONS], [p[1] for p in POSITIONS], [f"a {s} {{}}" for s in SHAPES]),
        "background": (list(BACKGROUNDS), list(BACKGROUNDS), [f"a {s} on a {{}} background" for s in SHAPES]),
    }


def attribute_accuracies(objective, imageset, image_emb: torch.Tensor, index: torch.Tensor, scale: float, bias, kind: str,
                         autocast_dtype=None) -> dict[str, dict[str, Any]]:
    """Zero-shot accuracy of every other caption attribute (colour, size, position, background) on ``index``.

    What a contrastive image-text model learns is what tells the captions of a batch apart;
    these numbers show which words its image tower can actually see.
    """
    out = {}
    for name, (values, words, templates) in shapes_attribute_prompts().items():
        if name not in imageset.attributes:
            continue
        lookup = {v: k for k, v in enumerate(values)}
        y = torch.tensor([lookup[imageset.attributes[name][i]] for i in index.tolist()], dtype=torch.int64)
        cls = class_text_embeddings(lambda t: embed_texts(objective, t, autocast_dtype), words, templates)
        pred = zeroshot_probabilities(image_emb, cls, scale, bias, kind).argmax(1)
        out[name] = {"top1": float((pred == y).float().mean()) if len(y) else float("nan"), "chance": 1.0 / len(values),
                     "classes": len(values)}
    return out


def _pair_names(imageset, index: torch.Tensor) -> list[str]:
    attrs = imageset.attributes
    return [f"{attrs['colour'][i]}-{attrs['shape'][i]}" for i in index.tolist()]


def zeroshot_protocol(objective, imageset, views, device="cpu", templates: Sequence[str] | None = None,
                      class_names: Sequence[str] | None = None, held_out: Sequence[str] | None = None,
                      autocast_dtype=None, max_retrieval: int = MAX_RETRIEVAL) -> dict[str, Any]:
    """Zero-shot classification, retrieval and (with held-out pairs) seen/unseen accuracy; see the module doc."""
    if not objective.has_text_tower:
        raise ValueError("zero-shot evaluation needs an objective with a text tower (CLIP/SigLIP)")
    t0 = time.perf_counter()
    data = imageset
    val = data.val_index
    names = list(class_names or data.class_names or [])
    templates = list(templates or default_templates(names))
    kind, scale, bias = objective.zeroshot_scoring()
    result: dict[str, Any] = {"top1": None, "templates": templates, "class_names": names, "kind": kind,
                              "logit_scale": scale, "logit_bias": bias, "val_images": len(val)}

    unseen_index = None
    if held_out and data.attributes is not None and "colour" in data.attributes:
        banned = held_out_mask(data.attributes, list(held_out))
        in_train = torch.zeros(len(data), dtype=torch.bool)
        in_train[data.train_index] = True
        unseen_index = (banned & ~in_train).nonzero().flatten()
        seen_val = val[~banned[val]]
    eval_index = val if unseen_index is None else torch.unique(torch.cat([val, unseen_index]))
    emb_all = embed_joint(objective, data.images[eval_index], views, device, autocast_dtype)
    pos = {int(j): k for k, j in enumerate(eval_index.tolist())}

    def rows(index: torch.Tensor) -> torch.Tensor:
        return emb_all[torch.tensor([pos[int(j)] for j in index.tolist()], dtype=torch.int64)] if len(index) else emb_all[:0]

    val_emb = rows(val)
    if names and data.labels is not None:
        cls = class_text_embeddings(lambda t: embed_texts(objective, t, autocast_dtype), names, templates)
        unknown = sorted({w for row in class_prompts(names, templates) for p in row for w in objective.unknown_words(p)})

        def predict(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs = zeroshot_probabilities(rows(index), cls, scale, bias, kind)
            return probs, data.labels[index]

        probs, y = predict(val)
        pred = probs.argmax(1)
        c = len(names)
        top5 = probs.topk(min(5, c), dim=1).indices
        conf = confusion_matrix(y, pred, c)
        per_class = (conf.diagonal().float() / conf.sum(1).clamp_min(1).float()).tolist()
        keep = min(len(val), MAX_PREDICTIONS)
        result.update(
            top1=float((pred == y).float().mean()) if len(y) else float("nan"),
            top5=float((top5 == y[:, None]).any(1).float().mean()) if len(y) else float("nan"),
            chance=1.0 / c, per_class={n: a for n, a in zip(names, per_class)}, confusion=conf.tolist(),
            indices=val[:keep].tolist(), predictions=pred[:keep].tolist(), labels=y[:keep].tolist(),
            prompts=f"{len(templates)} template{'s' if len(templates) != 1 else ''} x {c} classes, ensembled",
            unknown_words=unknown,
        )
        if unseen_index is not None:
            out = {}
            for split, index in (("seen", seen_val), ("unseen", unseen_index)):
                if len(index):
                    p, yy = predict(index)
                    out[split] = float((p.argmax(1) == yy).float().mean())
                else:
                    out[split] = None
                out[f"{split}_images"] = len(index)
            pairs: dict[str, list[int]] = {}
            if len(unseen_index):
                p, yy = predict(unseen_index)
                for name, ok in zip(_pair_names(data, unseen_index), (p.argmax(1) == yy).tolist()):
                    pairs.setdefault(name, []).append(int(ok))
            out["per_pair"] = {k: sum(v) / len(v) for k, v in sorted(pairs.items())}
            out["held_out"] = list(held_out)
            out["note"] = ("seen: held-out (val) images whose colour-shape pair was trained on; unseen: every image of a "
                           "held-out pair (none was ever in a training batch)")
            result["compositions"] = out
            result["seen"], result["unseen"] = out["seen"], out["unseen"]
        if data.attributes is not None and data.name == "shapes" and len(val):
            result["attributes"] = attribute_accuracies(objective, data, val_emb, val, scale, bias, kind, autocast_dtype)
            result["attributes"]["shape"] = {"top1": result["top1"], "chance": 1.0 / c, "classes": c}

    if data.captions is not None and len(val):
        r_index = val[:max_retrieval]
        captions = [data.captions[i] for i in r_index.tolist()]
        text_emb = embed_texts(objective, captions, autocast_dtype)
        result["recall"] = retrieval_metrics(rows(r_index), text_emb, captions)
    result["seconds"] = time.perf_counter() - t0
    return result


class TextScorer:
    """Text → normalised joint embeddings for the GUI, never touching the training model.

    Reads the objective's ``text_snapshot``: a CPU copy of the text tower and the image
    projection that the objective refreshes on the training thread at every visuals step
    (a single reference swap), so the GUI thread runs its own copy under ``no_grad``
    while training goes on.  ``scorer(texts)`` returns an N×D float32 numpy array of
    unit vectors, or None until the first copy exists.
    """

    def __init__(self, objective):
        if not objective.has_text_tower:
            raise ValueError(f"{type(objective).__name__} has no text tower to score prompts with")
        self._objective = objective

    @classmethod
    def from_run(cls, run_dir, device: str = "cpu") -> "TextScorer":
        """A scorer for a finished run folder (its last checkpoint)."""
        objective = load_trained(run_dir, device)[2]
        return cls(objective)

    @property
    def objective(self):
        """The objective whose text tower this scorer reads."""
        return self._objective

    @property
    def snapshot(self):
        return self._objective.text_snapshot

    @property
    def ready(self) -> bool:
        return self.snapshot is not None

    @property
    def kind(self) -> str:
        snap = self.snapshot
        return snap.kind if snap is not None else "clip"

    @property
    def logit_scale(self) -> float:
        snap = self.snapshot
        return snap.logit_scale if snap is not None else 1.0

    @property
    def logit_bias(self) -> float | None:
        snap = self.snapshot
        return snap.logit_bias if snap is not None else None

    def unknown_words(self, text: str) -> list[str]:
        snap = self.snapshot
        return [] if snap is None else snap.tokenizer.unknown_words(text)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> np.ndarray | None:
        snap = self.snapshot
        if snap is None:
            return None
        if not texts:
            return np.zeros((0, snap.text.embed_dim), np.float32)
        tokens = snap.tokenizer.encode(list(texts), snap.context_length)
        return F.normalize(snap.text(tokens).float(), dim=1).numpy()

    @torch.no_grad()
    def project_images(self, features: np.ndarray) -> np.ndarray | None:
        """Backbone features (a Probe event's ``features``) → normalised joint embeddings."""
        snap = self.snapshot
        if snap is None:
            return None
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        return F.normalize(snap.image_proj(x).float(), dim=1).numpy()


__all__ = ["TextScorer", "attribute_accuracies", "class_prompts", "class_text_embeddings", "confusion_matrix", "default_templates", "embed_joint",
           "embed_texts", "fill_template", "recall_at_k", "retrieval_metrics", "shapes_attribute_prompts", "zeroshot_probabilities",
           "zeroshot_protocol"]
