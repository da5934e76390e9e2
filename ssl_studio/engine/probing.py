"""What the trainer measures of the network without training it: probes, pictures and the closing evaluation.

A probe embeds a fixed set of held-out images (the same ones every time, so curves
compare like with like) and reduces their features to the diagnostics the panels plot:
effective rank, mean cosine, per-dimension spread, the spectrum, a 2-D PCA, an online
k-NN and linear probe against a fixed bank of training images, the projector's rank
and, for ViTs on data with object masks, the attention's overlap with the object.
The trainer emits what these return; nothing here writes or emits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ssl_studio.config import RunConfig
from ssl_studio.data import ImageSet
from ssl_studio.engine import attention, diagnostics
from ssl_studio.engine.device import autocast
from ssl_studio.engine.evaluate import EMBED_BATCH, attribute_knn, embed_images, fit_linear, knn_accuracy, knn_protocol, linear_protocol, standardise
from ssl_studio.engine.events import Probe, Visuals
from ssl_studio.engine.zeroshot import zeroshot_protocol
from ssl_studio.objectives.base import Objective

# The projector rank is measured on the first this many probe images: exactly the first batch ``embed`` runs,
# so their backbone features are reused rather than computed a second time.
PROJECTOR_IMAGES = EMBED_BATCH
_NOT_REUSED = object()


class Prober:
    """Probes, visuals and the closing evaluation of one run's objective, on its fixed probe images."""

    def __init__(self, cfg: RunConfig, imageset: ImageSet, views, objective, device: torch.device, channels_last: bool,
                 autocast_dtype: torch.dtype | None):
        self.cfg, self.imageset, self.views, self.objective = cfg, imageset, views, objective
        self.device, self.channels_last, self.autocast_dtype = device, channels_last, autocast_dtype
        probe_pool = imageset.val_index if len(imageset.val_index) else imageset.train_index
        self.probe_index = probe_pool[: cfg.probe.size]
        self.bank_index = None  # the k-NN bank: a fixed random sample of the training images, when there are labels
        if imageset.labels is not None:
            g = torch.Generator().manual_seed(cfg.seed + 3)
            bank_size = min(len(imageset.train_index), max(2000, 4 * len(self.probe_index)))
            self.bank_index = imageset.train_index[torch.randperm(len(imageset.train_index), generator=g)[:bank_size]]

    def embed(self, index: torch.Tensor) -> torch.Tensor:
        """Backbone features of the images at ``index``, on the CPU, in eval mode."""
        self.objective.eval()

        def to_input(x):
            v = self.views.plain(x)
            return v.contiguous(memory_format=torch.channels_last) if self.channels_last else v

        return embed_images(self.objective.embed, self.imageset.images[index], to_input, device=self.device,
                            autocast_dtype=self.autocast_dtype)

    def _reuses_backbone_features(self) -> bool:
        """Whether the objective's projector embedding is its projector applied to ``embed``'s features (the base
        class's ``embed``, ``project`` and ``projector_embed``), so that a probe need not run the backbone again."""
        cls = type(self.objective)
        return (cls.embed is Objective.embed and cls.project is Objective.project
                and cls.projector_embed is Objective.projector_embed)

    def _project_features(self, feats: torch.Tensor):
        """The projector's embedding of the first probe images from their backbone features, or ``_NOT_REUSED``.

        The features come from the same first batch of ``embed`` (``PROJECTOR_IMAGES`` images, eval mode), so the
        projector sees what a fresh forward pass would give it; its first layer is a Linear that autocast casts
        to the same precision either way."""
        if not self._reuses_backbone_features():
            return _NOT_REUSED
        if not self.objective.has_projector:
            return None
        projector = self.objective.projector
        if projector is None:  # the no_projector ablation: the loss sees the backbone's features
            return feats
        with autocast(self.device, self.autocast_dtype):
            return projector(feats.to(self.device))

    def _projector_embed_images(self):
        """The projector's embedding of the first probe images by a forward pass of the objective's own."""
        self.objective.eval()
        x = self.views.plain(self.imageset.images[self.probe_index[:PROJECTOR_IMAGES]].to(self.device))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.autocast_dtype):
            return self.objective.projector_embed(x)

    @torch.no_grad()
    def probe(self, step: int, final: bool) -> Probe:
        """The diagnostics of the features of the fixed probe images at ``step``."""
        data = self.imageset
        feats = self.embed(self.probe_index)
        projected = self._project_features(feats[:PROJECTOR_IMAGES])  # before NaNs are zeroed, as a fresh forward would see them
        finite = torch.isfinite(feats).all()
        if not finite:
            feats = torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
        labels = data.labels[self.probe_index] if data.labels is not None else None
        knn = linear = None
        if labels is not None and self.bank_index is not None:
            bank = self.embed(self.bank_index)
            bank_labels = data.labels[self.bank_index]
            knn = knn_accuracy(bank, bank_labels, feats, labels, k=self.cfg.probe.knn_k, num_classes=data.num_classes)
            # the online linear probe: a detached classifier on the current features (solo-learn reports the same number)
            bank_std, probe_std = standardise(bank, feats)
            head = fit_linear(bank_std, bank_labels, data.num_classes, weight_decay=1e-4, max_iter=50)
            with torch.no_grad():
                linear = float((head(probe_std).argmax(1) == labels).float().mean())
        projector_rank = None
        z = projected if projected is not _NOT_REUSED else self._projector_embed_images()
        if z is not None:
            projector_rank = diagnostics.effective_rank(torch.nan_to_num(z.float().cpu()))
        overlap = None
        backbone = self.objective.attention_backbone
        if data.masks is not None and attention.has_attention(backbone):
            first = self.probe_index[:64]
            x = self.views.plain(data.images[first].to(self.device))
            overlap = attention.attention_overlap(backbone, x, data.masks[first])
        event = Probe(
            step=step,
            effective_rank=diagnostics.effective_rank(feats),
            mean_cosine=diagnostics.mean_cosine(feats),
            dim_std=diagnostics.dim_std(feats),
            knn_acc=knn,
            linear_acc=linear,
            feature_dim=feats.shape[1],
            projector_rank=projector_rank,
            spectrum=diagnostics.spectrum(feats).astype(np.float32),
            points2d=diagnostics.pca_2d(feats),
            labels=labels.numpy() if labels is not None else None,
            indices=self.probe_index.numpy(),
            features=feats.numpy(),
            final=final,
            attention_iou=None if overlap is None else overlap["iou"],
            attention_auc=None if overlap is None else overlap["auc"],
        )
        return event

    @torch.no_grad()
    def visuals(self, step: int, request: dict[str, Any] | None = None) -> list[Visuals]:
        """The objective's pictures on the fixed probe images; ``request`` (from a panel) asks for specific ones."""
        self.objective.eval()
        images = self.views.plain(self.imageset.images[self.probe_index[:16]].to(self.device))
        if request is not None:
            out = dict(self.objective.visual_request(images, request) or {})
        else:
            out = dict(self.objective.visuals(images) or {})
        backbone = self.objective.attention_backbone
        if request is None and attention.has_attention(backbone):  # every ViT objective: [CLS] attention, its 60 %-mass mask, IoU
            masks = self.imageset.masks[self.probe_index[:16]] if self.imageset.masks is not None else None
            generic = attention.attention_visuals(backbone, images, masks, mean=self.imageset.mean, std=self.imageset.std)
            if generic is not None:
                out["attention"] = {**out.get("attention", {}), **generic}
        events = []
        for kind, payload in out.items():
            arrays = {k: np.asarray(v) for k, v in payload.items() if isinstance(v, (np.ndarray, torch.Tensor))}
            arrays = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}
            info = {k: v for k, v in payload.items() if not isinstance(v, (np.ndarray, torch.Tensor))}
            events.append(Visuals(step=step, kind=kind, arrays=arrays, info=info))
        return events

    def evaluate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The closing evaluation on the held-out images: (results by protocol, the summary's numbers)."""
        data = self.imageset
        summary: dict[str, Any] = {}
        if len(data.val_index) == 0:
            return {}, summary
        results: dict[str, Any] = {}
        if data.labels is not None:
            train_feats = self.embed(data.train_index)
            val_feats = self.embed(data.val_index)
            y_train, y_val = data.labels[data.train_index], data.labels[data.val_index]
            results["knn"] = knn_protocol(train_feats, y_train, val_feats, y_val, data.num_classes)
            results["linear"] = linear_protocol(train_feats, y_train, val_feats, y_val, data.num_classes, seed=self.cfg.seed)
            summary.update(knn_k5=results["knn"]["k5"], knn_k20=results["knn"]["k20"], linear_top1=results["linear"]["top1"])
            encoded = attribute_knn(train_feats, val_feats, data.attributes, data.train_index, data.val_index, labels=data.labels)
            if encoded is not None:
                results["attributes"] = encoded
                summary["attribute_knn"] = {name: r["k20"] for name, r in encoded["attributes"].items()}
        if data.modality == "text":  # the generation side of a text run; the probes above are its understanding side
            from ssl_studio.engine.text_eval import perplexity_protocol

            results["perplexity"] = perplexity_protocol(self.objective, data, self.device, autocast_dtype=self.autocast_dtype)
            summary["perplexity"] = results["perplexity"]["perplexity"]
        # An image-text model: zero-shot with labels, retrieval with captions alone (an unlabelled captioned folder).
        if self.objective.has_text_tower and (data.labels is not None or data.captions is not None):
            results["zeroshot"] = zeroshot_protocol(self.objective, data, self.views, self.device, held_out=self.cfg.data.held_out,
                                                    autocast_dtype=self.autocast_dtype)
            summary["zeroshot_top1"] = results["zeroshot"]["top1"]
            if "recall" in results["zeroshot"]:
                summary["recall_i2t_r5"] = results["zeroshot"]["recall"].get("image_to_text", {}).get("r5")
        return results, summary
