"""CLIP and SigLIP: images and their captions meet in one embedding space.

An image tower (the lab's backbone plus a linear projection) and a text tower (a small causal
Transformer over a word vocabulary built from the captions, ``ssl_studio.models.text``) are trained so
that an image and its own caption are the nearest pair in the batch: CLIP with a softmax over the
batch in both directions (Radford et al. 2021), SigLIP with an independent sigmoid per pair (Zhai et
al. 2023).  Once trained, a class is a sentence ("a picture of a triangle"), and an image is
classified by the nearest class sentence with no classifier trained (zero-shot;
``ssl_studio.engine.zeroshot``).

Augmentation is chosen for what the captions say (``augment_defaults``): they name the colour, size
and position of a shape, or the digit, and an augmentation that changes one makes the caption false.
Hence no flips ("left", "right"; a mirrored 2 is not a 2), no hue jitter or grayscale (colour is a
word), mild brightness, contrast and saturation jitter, and crops of at least 80 % of the area with
near-square ratios (a small crop can cut the object out or change its size or position).  CLIP
itself trained with a random square crop and nothing else (Radford et al. 2021, sec. 2.5).

What CLIP learns first is what tells the captions of one batch apart most cheaply: colour and
position before shape (docs/studies/clip-300-steps.md; 5 minutes: docs/studies/clip-shapes-5min.md).
``word_dropout`` (off by default, as in the paper) drops random words from each caption every step,
so that pairs differing only in the shape become more common and short prompts are in distribution.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.objectives import collectives as distributed
from ssl_studio.models import MLPHead
from ssl_studio.models.text import TextEncoder
from ssl_studio.models.tokenizer import EOT_ID, PAD_ID, SOT_ID, WordTokenizer
from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import (CLIP_INIT_LOG_SCALE, CLIP_MAX_LOG_SCALE, SIGLIP_INIT_BIAS, SIGLIP_INIT_LOG_SCALE,
                                          clip_loss, siglip_loss)
from ssl_studio.params import ConfigError, param

LOSSES = ("clip", "siglip")

# -- prompts -----------------------------------------------------------------------------

# CLIP's own prompt engineering (Radford et al. 2021, sec. 3.1.4) starts from "a photo of a {}."
# and ensembles many such templates.  The lab's captions are not photos of things, so each
# source gets templates phrased like its captions; every list is editable in the panel.
GENERIC_TEMPLATES = ("a photo of a {}", "a {}", "a picture of a {}", "an image of a {}")
SHAPES_TEMPLATES = ("a {}", "a picture of a {}", "a {} on a plain background", "a small {}", "a large {}",
                    "a {} in the centre")
DIGITS_TEMPLATES = ("the digit {}", "a handwritten {}", "a {}, written by hand", "a handwritten digit {}")


def fill_template(template: str, name: str) -> str:
    """``template`` with the class name in its ``{}`` (a template without one gets the name appended)."""
    return template.replace("{}", name) if "{}" in template else f"{template} {name}".strip()


def class_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    return [[fill_template(t, str(c)) for t in templates] for c in class_names]


def class_text_embeddings(encode_text: Callable[[list[str]], torch.Tensor], class_names: Sequence[str],
                          templates: Sequence[str]) -> torch.Tensor:
    """C×D prompt-ensembled class embeddings (Radford et al. 2021, sec. 3.1.4).

    Each class's prompts are embedded and L2-normalised, averaged, and the mean
    renormalised: the ensemble is taken in embedding space, so one forward pass
    per prompt and no extra cost at classification time.
    """
    if not class_names:
        raise ValueError("zero-shot classification needs at least one class name")
    if not templates:
        raise ValueError("zero-shot classification needs at least one prompt template")
    prompts = class_prompts(class_names, templates)
    flat = [p for row in prompts for p in row]
    emb = F.normalize(torch.as_tensor(encode_text(flat)).float(), dim=1)
    emb = emb.view(len(class_names), len(templates), -1).mean(1)
    return F.normalize(emb, dim=1)


def class_captions(labels: Sequence[int], class_names: Sequence[str], seed: int = 0,
                   templates: Sequence[str] = GENERIC_TEMPLATES) -> list[str]:
    """One caption per image from its class name through a seeded choice of templates.

    For data with classes but no captions (a folder of class sub-folders, CIFAR):
    CLIP then learns from "a photo of a cat", "an image of a cat", ... which is the
    weakest form of supervision it can get, and close to a supervised classifier.
    """
    g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    pick = torch.randint(len(templates), (len(labels),), generator=g).tolist()
    return [fill_template(templates[k], str(class_names[int(y)])) for k, y in zip(pick, labels)]


# -- the objective -----------------------------------------------------------------------

@dataclass
class CLIPParams:
    """Radford et al. 2021 (CLIP) and Zhai et al. 2023 (SigLIP), scaled to the lab.

    Published: CLIP's temperature starts at 0.07 (logit scale ln(1/0.07), learnable,
    clipped at 100); SigLIP's at t' = ln 10 with bias b = -10.  CLIP's text tower is a
    12-layer 512-wide causal Transformer over 76 tokens with a linear projection; the
    captions here are a dozen words from a few hundred, so 3 layers of width 128 with 4
    heads over 32 tokens and a 128-wide joint space are enough; the text tower then costs
    about what the default ConvNet does per step on a CPU.
    """

    loss: str = param("clip", help="clip: softmax over the batch in both directions (InfoNCE); siglip: one sigmoid per image-caption pair.",
                      choices=LOSSES)
    embed_dim: int = param(128, help="Width of the joint image-text embedding space.", min=8, max=2048)
    proj_layers: int = param(1, help="Layers of the image projection (1 = linear, as in CLIP).", min=1, max=3)
    text_width: int = param(128, help="Width of the text Transformer.", min=16, max=1024)
    text_layers: int = param(3, help="Transformer blocks in the text encoder.", min=1, max=12)
    text_heads: int = param(4, help="Attention heads per text block (must divide the text width).", min=1, max=16)
    context_length: int = param(32, help="Tokens per caption, <sot> and <eot> included; longer captions are cut.", min=4, max=128,
                                unit="tokens")
    min_count: int = param(1, help="A word enters the vocabulary when the captions use it at least this often; rarer words become <unk>.",
                           min=1, max=1000)
    dedupe_captions: bool = param(True, help="Pairs whose captions are the same text count as matches, not negatives (class-name captions repeat).")
    word_dropout: float = param(0.0, help="Share of a caption's words dropped at random each step (0 = CLIP as published); see the module doc.",
                                min=0.0, max=0.9)


class _Towers:
    """A frozen CPU copy of the text tower and the image projection, for other threads (the GUI's scorer).

    Not an ``nn.Module``: it must not become part of the objective's parameters or state_dict.
    """

    def __init__(self, objective: "CLIP", step: int | None = None):
        self.text = copy.deepcopy(objective.text).float().cpu().eval()
        self.image_proj = copy.deepcopy(objective.image_proj).float().cpu().eval()
        for module in (self.text, self.image_proj):
            for p in module.parameters():
                p.requires_grad_(False)
        self.tokenizer = objective.tokenizer
        self.context_length = objective.params.context_length
        self.kind = objective.params.loss
        self.logit_scale = float(objective.scale().detach().cpu())
        self.logit_bias = None if objective.logit_bias is None else float(objective.logit_bias.detach().cpu())
        self.step = step


class CLIP(Objective):
    name = "clip"
    title = "CLIP / SigLIP"
    family = "cross-modal"
    description = ("An image tower and a text tower learn to put each image next to its own caption.\n"
                   "Classes then become sentences: zero-shot classification with no classifier trained.")
    Params = CLIPParams
    honours = frozenset({"no_temperature"})
    needs_captions = True
    num_global_views = 1
    recipe = OptimRecipe(optimizer="adamw", lr=1e-3, weight_decay=0.1)  # CLIP: AdamW, wd 0.2, lr 5e-4 at B=32k; shorter runs want more lr
    # Under torchrun: every rank's images and captions are negatives (gathered with gradient, open_clip's
    # gather_with_grad; SigLIP gathers the captions), duplicate captions are found in the global batch, the
    # per-sample draws (templates, word drops) are made for the global batch; BN per rank, as open_clip.
    batch_exchange = "gathered negatives"
    has_text_tower = True
    metric_specs = {"i2t_acc": MetricSpec("Image finds its caption", "", "accuracy"),
                    "t2i_acc": MetricSpec("Caption finds its image", "", "accuracy"),
                    "logit_scale": MetricSpec("Logit scale", "", "scale"),
                    "logit_bias": MetricSpec("Logit bias (SigLIP)", "", "scale")}
    augment_defaults = {
        "crop_scale_min": 0.8, "crop_ratio_min": 0.9, "crop_ratio_max": 1.1, "flip_p": 0.0,
        "jitter_p": 0.5, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0, "grayscale_p": 0.0,
    }

    def __init__(self, backbone, params: CLIPParams, context):
        super().__init__(backbone, params, context)
        p = params
        if p.text_width % p.text_heads:
            raise ConfigError("objective.text_heads", f"must divide objective.text_width ({p.text_width}), got {p.text_heads}")
        captions = list(context.captions) if context.captions else None
        if captions is None and not context.class_names:  # with class names, captions are made from labels (_batch_tokens)
            raise ValueError("CLIP needs captions: add captions.csv (columns file,caption) or .txt files beside the images, "
                             "or sort the images into class sub-folders whose names become captions")
        corpus = captions if captions is not None else [fill_template(t, c) for c in context.class_names for t in GENERIC_TEMPLATES]
        self.tokenizer = WordTokenizer.build(corpus, min_count=p.min_count, always=context.class_names or ())
        self.image_proj = MLPHead(backbone.feature_dim, backbone.feature_dim, p.embed_dim, num_layers=p.proj_layers)
        self.text = TextEncoder(len(self.tokenizer), p.embed_dim, p.context_length, p.text_width, p.text_layers, p.text_heads)
        fixed = self.ablated("no_temperature")
        init = 0.0 if fixed else (CLIP_INIT_LOG_SCALE if p.loss == "clip" else SIGLIP_INIT_LOG_SCALE)
        self.logit_scale = nn.Parameter(torch.tensor(float(init)), requires_grad=not fixed)
        self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS)) if p.loss == "siglip" else None
        self._captions = captions
        self._tokens: torch.Tensor | None = None
        self._encode_all()
        self._register_load_state_dict_pre_hook(self._resize_for_checkpoint)
        self.text_snapshot: _Towers | None = None
        self.refresh_snapshot()

    # -- towers ----------------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        """exp(logit scale), clamped at 100 for CLIP."""
        cap = CLIP_MAX_LOG_SCALE if self.params.loss == "clip" else None
        t = self.logit_scale if cap is None else self.logit_scale.clamp(max=cap)
        return t.exp()

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Joint-space image embeddings, un-normalised."""
        return self.image_proj(self.backbone(images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint-space image embeddings."""
        return F.normalize(self.image_features(images).float(), dim=1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer.encode(list(texts), self.params.context_length)

    def encode_text(self, texts: Sequence[str], batch_size: int = 1024) -> torch.Tensor:
        """L2-normalised joint-space text embeddings, on the objective's device."""
        device = self.logit_scale.device
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start:start + batch_size]).to(device)
            out.append(F.normalize(self.text(tokens).float(), dim=1))
        return torch.cat(out) if out else torch.zeros(0, self.params.embed_dim, device=device)

    def zeroshot_scoring(self) -> tuple[str, float, float | None]:
        bias = None if self.logit_bias is None else float(self.logit_bias.detach().cpu())
        return self.params.loss, float(self.scale().detach().cpu()), bias

    def unknown_words(self, text: str) -> list[str]:
        return self.tokenizer.unknown_words(text)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def projector_embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_features(images)

    # -- training --------------------------------------------------------------------------
    def _encode_all(self) -> None:
        """Token ids of every caption of the set, once: a step then indexes them by ``batch.indices``."""
        self._tokens = self.tokenize(self._captions) if self._captions is not None else None

    def _batch_tokens(self, batch: Batch) -> torch.Tensor:
        idx = batch.indices.cpu()
        if batch.captions is not None:
            tokens = self._tokens
            if (tokens is not None and len(idx) and int(idx.max()) < len(tokens) and len(batch.captions) == len(idx)
                    and self._captions[int(idx[0])] == batch.captions[0]):
                return tokens[idx]
            return self.tokenize(batch.captions)
        if batch.labels is not None and self.context.class_names:
            names = self.context.class_names
            pick = self.draw_global(len(idx), lambda rows, g: torch.randint(len(GENERIC_TEMPLATES), (rows,), generator=g)).tolist()
            return self.tokenize([fill_template(GENERIC_TEMPLATES[k], names[int(y)]) for k, y in zip(pick, batch.labels.tolist())])
        raise ValueError("CLIP got a batch without captions or labels; it needs image-caption pairs")

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        x = batch.views[0]
        tokens = self._batch_tokens(batch).to(x.device, non_blocking=True)
        if self.params.word_dropout > 0:
            noise = self.draw_global(len(tokens), lambda rows, g: torch.rand((rows, tokens.shape[1]), generator=g)).to(tokens.device)
            tokens = drop_words(tokens, self.params.word_dropout, noise=noise)
        img = self.image_features(x)
        txt = self.text(tokens)
        positives = None
        if self.params.dedupe_captions:
            everyone = distributed.gather_no_grad(tokens)  # duplicates anywhere in the global batch
            _, group = torch.unique(everyone, dim=0, return_inverse=True)
            same = group[distributed.my_rows(len(tokens))][:, None] == group[None, :]
            if int(torch.unique(group).numel()) < len(group):
                positives = same
        if self.params.loss == "clip":
            loss = clip_loss(img, txt, self.logit_scale, positives, across_ranks=True)
        else:
            loss = siglip_loss(img, txt, self.logit_scale, self.logit_bias, positives, across_ranks=True)
        with torch.no_grad():
            sim = F.normalize(img.float(), dim=1) @ F.normalize(txt.float(), dim=1).T
            local = None if positives is None else positives[:, distributed.my_rows(len(tokens))]
            hit_target = local if local is not None else torch.eye(len(sim), dtype=torch.bool, device=sim.device)
            rows = torch.arange(len(sim), device=sim.device)
            i2t = hit_target[rows, sim.argmax(1)].float().mean()
            t2i = hit_target[sim.argmax(0), rows].float().mean()
        metrics = {"i2t_acc": i2t, "t2i_acc": t2i, "logit_scale": self.scale().detach()}
        if self.logit_bias is not None:
            metrics["logit_bias"] = self.logit_bias.detach()
        return StepOutput(loss, metrics)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self.params.loss == "clip" and self.logit_scale.requires_grad:
            self.logit_scale.clamp_(max=CLIP_MAX_LOG_SCALE)  # as CLIP does after each step

    # -- zero-shot visuals -------------------------------------------------------------------
    def refresh_snapshot(self, step: int | None = None) -> _Towers:
        """Replace the CPU copy the GUI's scorer reads (one reference swap: readers never see half a copy)."""
        snap = _Towers(self, step)
        self.text_snapshot = snap
        return snap

    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        """Top-3 class prompts per probe image, plus the embeddings a panel needs to re-score them."""
        was_training = self.training
        self.eval()
        self.refresh_snapshot()
        img = self.encode_image(images).cpu()
        payload: dict[str, Any] = {"image_embeddings": img.numpy(), "kind": self.params.loss,
                                   "logit_scale": float(self.scale().cpu()),
                                   "logit_bias": None if self.logit_bias is None else float(self.logit_bias.cpu())}
        names = self.context.class_names
        if names:
            templates = list(self.context.prompt_templates or GENERIC_TEMPLATES)
            cls = class_text_embeddings(lambda t: self.encode_text(t).cpu(), names, templates)
            probs = zeroshot_probabilities(img, cls, payload["logit_scale"], payload["logit_bias"], self.params.loss)
            k = min(3, len(names))
            top_p, top_i = probs.topk(k, dim=1)
            payload.update(class_embeddings=cls.numpy(), probabilities=probs.numpy(), top_index=top_i.numpy(),
                           top_prob=top_p.numpy(), class_names=list(names), templates=templates)
        self.train(was_training)
        return {"zeroshot": payload}

    # -- persistence -----------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_json()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        text = state.get("tokenizer")
        if text:
            self.tokenizer = WordTokenizer.from_json(text)
            self._encode_all()
        self.refresh_snapshot()

    def artifacts(self) -> dict[str, str]:
        return {"tokenizer.json": self.tokenizer.to_json()}

    def _resize_for_checkpoint(self, state_dict, prefix, *args, **kwargs) -> None:
        """A checkpoint whose vocabulary has another size (its captions changed since): resize the token table in place.

        In place, so that an optimiser built before the checkpoint is loaded still holds the
        same Parameter; ``load_extra_state`` then restores the checkpoint's tokenizer.
        """
        key = prefix + "text.token_embedding.weight"
        weight = state_dict.get(key)
        table = self.text.token_embedding
        if weight is not None and weight.shape != table.weight.shape:
            table.weight.data = torch.empty(weight.shape, dtype=table.weight.dtype, device=table.weight.device)
            table.num_embeddings = weight.shape[0]
            self.text.vocab_size = weight.shape[0]


def drop_words(tokens: torch.Tensor, p: float, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """Each word token (between <sot> and <eot>) dropped with probability ``p``; survivors keep their order.

    A row that would lose every word keeps them all.  Shorter captions are then still true
    (a subset of what the caption said), and prompts as short as "a triangle" stop being
    out of the text tower's distribution.
    """
    words = (tokens != PAD_ID) & (tokens != SOT_ID) & (tokens != EOT_ID)
    u = noise if noise is not None else torch.rand(tokens.shape, device=tokens.device, generator=generator)
    keep_word = words & (u >= p)
    empty = ~keep_word.any(1, keepdim=True)
    keep_word = torch.where(empty, words, keep_word)
    keep = keep_word | (tokens == SOT_ID) | (tokens == EOT_ID)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in their order
    out = tokens.gather(1, order)
    return out.masked_fill(~keep.gather(1, order), PAD_ID)


def zeroshot_probabilities(image_emb: torch.Tensor, class_emb: torch.Tensor, logit_scale: float, logit_bias: float | None = None,
                           kind: str = "clip") -> torch.Tensor:
    """N×C class probabilities of normalised image embeddings against normalised class embeddings.

    CLIP: softmax over the classes of scale·cos.  SigLIP: each class's own sigmoid of
    scale·cos + bias (Zhai et al. 2023): the numbers need not sum to one, and all can be low.
    """
    logits = float(logit_scale) * image_emb.float() @ class_emb.float().T
    if kind == "siglip":
        return torch.sigmoid(logits + float(logit_bias or 0.0))
    return logits.softmax(dim=1)


__all__ = ["CLIP", "CLIPParams", "DIGITS_TEMPLATES", "GENERIC_TEMPLATES", "LOSSES", "SHAPES_TEMPLATES", "class_captions",
           "class_prompts", "class_text_embeddings", "drop_words", "fill_template", "zeroshot_probabilities"]
