"""MAE vs I-JEPA vs DINO on one ViT: what each learns, and where each one's attention goes.

The three methods train the same ViT (same width, depth, patch grid and
initialisation: every run seeds with the same seed before it builds) on the
same data at one budget, wall-clock minutes or steps.  Each trained encoder is
then read the same way, beside the ViT at initialisation (the reference row):

- k-NN@20 and the linear probe on the method's own evaluation feature
  (``objective.embed``: MAE mean-pooled patches, I-JEPA the target encoder's
  mean-pooled patches, DINO the [CLS] token), from the run's report.json;
  the reference row uses the initial ViT's [CLS] token with the same protocols;
- effective rank of the probe features (final probe);
- attention-mask IoU: the smallest set of patches holding 60 % of the last
  layer's heads-averaged [CLS] attention, against the object masks, on the grid
  (``ssl_studio.engine.attention``), over the first ``IOU_IMAGES`` probe images;
  the attention read is that of the encoder the method evaluates
  (``attention_backbone`` when the objective has one);
- mean attention distance per layer (pixels), on the first ``DISTANCE_IMAGES``.

    runs/studies/<stamp>-masked/
      runs/        the ordinary run folders
      table.md     one row per method (and the initial ViT)
      table.csv    the same numbers
      figure.png   each method's attention on the same probe images, and distance per layer
      study.json   everything, machine-readable
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ssl_studio.config import RunConfig, config_from_mapping
from ssl_studio.engine import attention
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Event, Finished, Probe
from ssl_studio.engine.queue import RunQueue
from ssl_studio.params import ConfigError
from ssl_studio.presets import presets_dir
from ssl_studio.studies.figure import font
from ssl_studio.studies.common import new_study_dir, set_path, study_budget

METHODS = (("mae", "MAE"), ("ijepa", "I-JEPA"), ("dino-vit", "DINO (ViT)"))  # preset name, label
IOU_IMAGES = 1000  # the whole default probe set: per-image IoU changes are noisy (SD ~0.27), so 256 images left a standard error of ~0.017
DISTANCE_IMAGES = 64
FIGURE_IMAGES = 6


@dataclass
class MaskedRow:
    method: str
    preset: str
    objective: str
    steps: int = 0
    train_seconds: float | None = None
    knn_k20: float | None = None
    linear_top1: float | None = None
    attribute_knn: dict[str, float] = field(default_factory=dict)  # k-NN@20 on each recorded attribute (shapes: colour, size, ...)
    effective_rank: float | None = None
    attention_iou: float | None = None  # study: first IOU_IMAGES probe images
    probe_attention_iou: float | None = None  # the trainer's final probe (first 64 probe images)
    initial_probe_iou: float | None = None  # the run's own step-0 probe: the same initial ViT for every method
    iou_gain: float | None = None  # mean over the same images of (this IoU - the initial ViT's IoU), image by image
    iou_gain_se: float | None = None  # its standard error: what "clearly above initialisation" is judged by
    mask_patches: float | None = None  # mean size of the 60 % mask, in patches
    centre_prior_iou: float | None = None  # a fixed centre mask of this row's mask size: the bar its attention IoU must beat
    attention_regions: dict[str, float] = field(default_factory=dict)  # mean attention mass inside / on the outline of / off the object, and each region's patch share
    object_background_auc: float | None = None  # does the attention rank object patches above background ones (1), the reverse (0), neither (0.5)
    masked_mse: float | None = None  # MAE only: hidden-patch MSE of the reconstructions figure
    fill_mse: float | None = None  # the same patches filled with the image's mean visible colour: the bar to beat
    attention_distance: list[float] = field(default_factory=list)  # per layer, pixels
    status: str = "not run"
    run_dir: str = ""


def _method_config(preset: str, data: str, budget: dict[str, Any], out: Path, overrides: dict[str, Any]) -> RunConfig:
    path = presets_dir() / f"{preset}.toml"
    mapping = tomllib.loads(path.read_text(encoding="utf-8"))
    mapping.pop("preset", None)
    set_path(mapping, "data.source", data)
    set_path(mapping, "model.backbone", "vit")
    mapping["budget"] = dict(budget)
    mapping["out"] = str(out)
    mapping["name"] = preset
    for key, value in overrides.items():
        set_path(mapping, key, value)
    try:
        return config_from_mapping(mapping)
    except ConfigError as exc:
        raise ConfigError(f"preset {preset}", f"does not make a valid run: {exc}") from None


def run_masked_study(data: str = "shapes", minutes_per_run: float = 5.0, out: str | Path = "runs/studies",
                     steps: int | None = None, overrides: dict[str, Any] | None = None, control: RunControl | None = None,
                     log: Callable[[str], None] | None = None, *,
                     callback: Callable[[int, Event], None] | None = None) -> Path:
    """Train MAE, I-JEPA and DINO on one ViT at one budget and write the study folder; returns its path.

    ``steps`` (if given) replaces the wall-clock budget (equal optimisation rather
    than equal cost).  ``overrides`` sets any config path for every run, e.g.
    ``{"model.width": 32, "data.num_images": 2000}``; ``model.backbone`` is always vit.
    """
    budget = study_budget(steps, minutes_per_run)
    overrides = dict(overrides or {})
    study_dir = new_study_dir(out, "masked")

    configs = [_method_config(preset, data, budget, study_dir / "runs", overrides) for preset, _ in METHODS]
    rows = [MaskedRow(method=label, preset=preset, objective=cfg.objective.name) for (preset, label), cfg in zip(METHODS, configs)]

    def on_event(index: int, event: Event) -> None:
        row = rows[index]
        if isinstance(event, Probe):
            if event.step == 0 and not event.final:
                row.initial_probe_iou = event.attention_iou
            if event.final:
                row.probe_attention_iou = event.attention_iou
        elif isinstance(event, Finished):
            s = event.summary
            row.knn_k20, row.linear_top1 = s.get("knn_k20"), s.get("linear_top1")
            row.attribute_knn = dict(s.get("attribute_knn") or {})
            row.effective_rank, row.train_seconds = s.get("effective_rank"), s.get("train_seconds")
            if log:
                log(f"[{index + 1}/{len(rows)}] {row.method}: {event.status} after {event.step} steps"
                    + (f", k-NN@20 {row.knn_k20:.3f}" if row.knn_k20 is not None else "")
                    + (f", attention IoU {row.probe_attention_iou:.3f}" if row.probe_attention_iou is not None else ""))
        if callback is not None:
            callback(index, event)

    if log:
        log(f"masked study: {len(configs)} runs at " + (f"{steps} steps" if steps is not None else f"{minutes_per_run:g} min")
            + f" each -> {study_dir}")
    results = RunQueue(configs, callback=on_event, control=control).run()
    for row, result in zip(rows, results):
        row.status, row.steps = result.status, result.step
        row.run_dir = str(result.run_dir) if result.run_dir else ""
        if not result.ok and log:
            log(f"{row.method}: {result.status}: {result.message}")

    if log:
        log("reading attention of the trained encoders and of the ViT at initialisation")
    init_row, pictures, references = _analyse(configs, rows)
    meta = {"data": data, "budget": budget, "overrides": overrides, "iou_images": IOU_IMAGES, "distance_images": DISTANCE_IMAGES,
            "keep_mass": 0.6, **references}
    mae_row = next((r for r in rows if r.objective == "mae" and r.run_dir and (Path(r.run_dir) / "checkpoints" / "last.pt").exists()), None)
    if mae_row is not None:
        mae_row.masked_mse, mae_row.fill_mse = draw_reconstructions(mae_row.run_dir, study_dir / "reconstructions.png",
                                                                    title=f"MAE reconstructions after {mae_row.steps} steps, {data}")
    write_study(study_dir, [init_row] + rows, meta, pictures)
    return study_dir


RECONSTRUCTION_IMAGES = 10


def draw_reconstructions(run_dir: str | Path, path: Path, title: str = "MAE reconstructions",
                         num_images: int = RECONSTRUCTION_IMAGES) -> tuple[float, float]:
    """The trained MAE's answer on held-out probe images, as the reconstruction panel shows it:
    rows original / masked input / reconstruction / visible patches pasted back, under the
    trained mask ratio and the panel's fixed probe mask.  Returns the hidden-patch MSE
    (display scale [0, 1]) and that of filling every hidden patch with the image's mean
    visible colour, so the table can state what the picture shows against a fill that
    knows nothing of shape."""
    from PIL import Image, ImageDraw

    from ssl_studio.engine.trained import reconstruction_from_run
    from ssl_studio.objectives.mae import PROBE_MASK_SEED

    event = reconstruction_from_run(run_dir, mask_ratio=None, seed=PROBE_MASK_SEED, num_images=num_images)
    labels = ("original", "masked input", "reconstruction", "visible pasted back")
    keys = ("original", "masked", "reconstruction", "pasted")
    tiles = [[attention.upscale(attention.to_hwc_uint8(img)) for img in event.arrays[k]] for k in keys]
    grid = attention.montage(tiles)
    left, top = 170, 40
    canvas = Image.new("RGB", (left + grid.shape[1] + 12, top + grid.shape[0] + 30), "white")
    canvas.paste(Image.fromarray(grid), (left, top))
    d = ImageDraw.Draw(canvas)
    d.text((12, 10), title, fill="black", font=font(16))
    row_h = (grid.shape[0] + attention.GAP) // len(labels)
    for i, label in enumerate(labels):
        d.text((12, top + i * row_h + row_h // 2 - 8), label, fill="black", font=font(13))
    mse = float(event.info["masked_mse"])
    fill = mean_fill_mse(event.arrays["original"], event.arrays["mask"])
    d.text((12, canvas.height - 22), f"mask ratio {event.info['mask_ratio']:.2f}; hidden-patch MSE {mse:.4f} against {fill:.4f} for "
           "a fill with each image's mean visible colour (pixels in [0, 1]); held-out probe images", fill=(90, 90, 90), font=font(11))
    canvas.save(path)
    return mse, fill


def mean_fill_mse(original: np.ndarray, mask: np.ndarray) -> float:
    """MSE over the hidden pixels when each hidden patch is painted with the image's mean visible colour.

    ``original``: B x C x S x S in [0, 1]; ``mask``: B x N, 1 = hidden, N a square patch grid.
    """
    b, c, size, _ = original.shape
    g = int(round(mask.shape[1] ** 0.5))
    hidden = attention.grid_to_pixels(mask.reshape(b, g, g).astype(np.float32), size)[:, None]  # B 1 S S
    visible = 1.0 - hidden
    mean = (original * visible).sum((2, 3), keepdims=True) / np.maximum(visible.sum((2, 3), keepdims=True), 1.0)
    err = ((original - mean) ** 2).mean(1, keepdims=True)
    return float((err * hidden).sum() / max(hidden.sum(), 1.0))


# -- reading the encoders ------------------------------------------------------------------


def _encoder(objective) -> torch.nn.Module:
    return getattr(objective, "attention_backbone", None) or objective.backbone


@torch.no_grad()
def _attention_numbers(backbone, x_iou: torch.Tensor, masks: torch.Tensor | None, x_dist: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"attention_iou": None, "mask_patches": None, "per_image_iou": None, "attention_regions": {},
                           "object_background_auc": None}
    maps = []
    for chunk in x_iou.split(64):
        maps.append(attention.cls_attention(backbone, chunk).mean(1))
    mean = torch.cat(maps)
    g = backbone.grid_size
    mask = attention.attention_mask(mean, 0.6).reshape(-1, g, g)
    out["mask_patches"] = float(mask.reshape(len(mask), -1).sum(1).float().mean())
    if masks is not None:
        out["attention_regions"] = {k: float(v.mean()) for k, v in attention.attention_by_region(mean, masks).items()}
        out["object_background_auc"] = attention.nanmean(attention.object_background_auc(mean, masks))
        iou = attention.mask_iou(mask, masks)
        out["per_image_iou"] = iou
        out["attention_iou"] = attention.nanmean(iou)
    out["attention_distance"] = attention.mean_attention_distance(backbone, x_dist)
    return out


def paired_gain(values: torch.Tensor | None, reference: torch.Tensor | None) -> tuple[float | None, float | None]:
    """Mean and standard error of ``values - reference`` over the images where both are defined.

    Both IoUs are measured on the same images, so their difference image by image removes
    the spread between images (some shapes are easy to cover, some hard) from the comparison.
    """
    if values is None or reference is None:
        return None, None
    ok = torch.isfinite(values) & torch.isfinite(reference)
    d = (values - reference)[ok].double()
    if d.numel() < 2:
        return (float(d.mean()) if d.numel() else None), None
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


CLEAR_SE = 3.0  # "clearly" above or below: a paired difference of at least three standard errors


def iou_verdict(value: float, reference: float, gain: float | None, se: float | None) -> str:
    """How a trained encoder's attention IoU compares with the initial ViT's, in words.

    "clearly above" / "clearly below" only when the paired per-image difference is at least
    ``CLEAR_SE`` standard errors; a smaller one is "not clearly different from" (a 1.7-SE
    gain on one seed reversed on another).  Without a standard error, the plain comparison.
    """
    if gain is None or not se:
        return "above" if value > reference else "not above"
    z = gain / se
    if z >= CLEAR_SE:
        return "clearly above"
    if z <= -CLEAR_SE:
        return "clearly below"
    return "not clearly different from"


def centre_prior_iou(object_masks: torch.Tensor, grid: int, patches: int) -> float | None:
    """IoU with the objects of a fixed mask: the ``patches`` grid cells nearest the image centre.

    What an attention map scores by looking at the middle of every image and nowhere in
    particular.  On data whose objects sit near the centre (shapes) this bar is high, so an
    attention mask "finds the object" only when it beats it, not merely the initial ViT.
    """
    if object_masks is None or patches < 1:
        return None
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centre = (grid - 1) / 2
    distance = ((rows - centre) ** 2 + (cols - centre) ** 2).flatten().float()
    cells = torch.zeros(grid * grid, dtype=torch.bool)
    cells[distance.argsort(stable=True)[: min(patches, grid * grid)]] = True
    return attention.nanmean(attention.mask_iou(cells.reshape(1, grid, grid).expand(len(object_masks), grid, grid), object_masks))


def _analyse(configs: list[RunConfig], rows: list[MaskedRow]) -> tuple[MaskedRow, dict[str, Any], dict[str, Any]]:
    """Attention numbers for every trained run and for the ViT at initialisation, the figure's pictures,
    and the references the table states (the ViT's sizes, the centre-prior IoU)."""
    from ssl_studio.engine.build import build_views, initial_objective, load_data
    from ssl_studio.engine.evaluate import attribute_knn, embed_images, knn_protocol, linear_protocol
    from ssl_studio.engine.runs import RunFolder

    cfg0 = configs[0]
    data = load_data(cfg0)
    views = build_views(cfg0, data)
    pool = data.val_index if len(data.val_index) else data.train_index
    probe_index = pool[: cfg0.probe.size]
    x_iou = views.plain(data.images[probe_index[:IOU_IMAGES]])
    x_dist = x_iou[:DISTANCE_IMAGES]
    masks = data.masks[probe_index[:IOU_IMAGES]] if data.masks is not None else None
    fig_x = x_iou[:FIGURE_IMAGES]
    pictures: dict[str, Any] = {"images": attention.to_display(fig_x, data.mean, data.std).numpy(), "objects": None,
                                "maps": {}, "masks": {}}

    def picture(label: str, backbone) -> None:
        payload = attention.attention_visuals(backbone, fig_x, None if masks is None else masks[:FIGURE_IMAGES])
        if payload is None:
            return
        pictures["maps"][label] = payload["mean"]
        pictures["masks"][label] = payload["mask"]
        if "object" in payload:
            pictures["objects"] = payload["object"]

    # the ViT at initialisation: every method's backbone is built from the same seed first, so one stands for all
    init = initial_objective(cfg0, data).eval()
    init_row = MaskedRow(method="ViT at initialisation", preset="-", objective="-", status="reference")
    init_numbers = _attention_numbers(init.backbone, x_iou, masks, x_dist)
    init_iou = init_numbers.pop("per_image_iou")
    init_row.__dict__.update(init_numbers)
    init_row.initial_probe_iou = next((r.initial_probe_iou for r in rows if r.initial_probe_iou is not None), None)
    if data.labels is not None and len(data.val_index):
        feats_tr = embed_images(init.backbone, data.images[data.train_index], views.plain)
        feats_va = embed_images(init.backbone, data.images[data.val_index], views.plain)
        y_tr, y_va = data.labels[data.train_index], data.labels[data.val_index]
        init_row.knn_k20 = knn_protocol(feats_tr, y_tr, feats_va, y_va, data.num_classes)["k20"]
        init_row.linear_top1 = linear_protocol(feats_tr, y_tr, feats_va, y_va, data.num_classes, seed=cfg0.seed)["top1"]
        encoded = attribute_knn(feats_tr, feats_va, data.attributes, data.train_index, data.val_index, labels=data.labels)
        if encoded is not None:
            init_row.attribute_knn = {name: r["k20"] for name, r in encoded["attributes"].items()}
        from ssl_studio.engine import diagnostics

        init_row.effective_rank = diagnostics.effective_rank(embed_images(init.backbone, data.images[probe_index], views.plain))
    picture(init_row.method, init.backbone)
    g = init.backbone.grid_size
    references = {"backbone": init.backbone.describe(), "centre_prior_iou": None, "centre_prior_patches": None}
    if masks is not None and init_row.mask_patches:
        k = int(round(init_row.mask_patches))
        references["centre_prior_patches"] = k
        references["centre_prior_iou"] = init_row.centre_prior_iou = centre_prior_iou(masks, g, k)

    for cfg, row in zip(configs, rows):
        if not row.run_dir or not (Path(row.run_dir) / "checkpoints" / "last.pt").exists():
            continue
        objective = initial_objective(cfg, data)
        ckpt = RunFolder(row.run_dir, create=False).load_checkpoint()
        objective.load_state_dict(ckpt["objective"])
        objective.eval()
        enc = _encoder(objective)
        numbers = _attention_numbers(enc, x_iou, masks, x_dist)
        row.attention_iou, row.mask_patches = numbers["attention_iou"], numbers["mask_patches"]
        row.attention_regions, row.object_background_auc = numbers["attention_regions"], numbers["object_background_auc"]
        row.attention_distance = numbers["attention_distance"]
        row.iou_gain, row.iou_gain_se = paired_gain(numbers["per_image_iou"], init_iou)
        if masks is not None and row.mask_patches:
            # a smaller mask has a higher centre prior on centred objects: each mask is judged at its own size
            row.centre_prior_iou = centre_prior_iou(masks, g, int(round(row.mask_patches)))
        picture(row.method, enc)
    return init_row, pictures, references


# -- outputs ---------------------------------------------------------------------------------

COLUMNS = ("method", "objective", "steps", "train s", "k-NN@20", "linear top-1", "k-NN@20 by attribute", "effective rank", "attention IoU",
           "60 % mask (patches)", "centre prior at that size", "attention on object inside / outline / background", "object vs background AUC",
           "attention distance per layer (px)", "status")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _regions(regions: dict[str, float]) -> str:
    if not regions:
        return "-"
    return " / ".join(f"{regions[k]:.2f}" for k in attention.REGIONS)


def _regions_sentence(rows: list[MaskedRow]) -> str:
    """What the inside / outline / background column means, with the patch shares a uniform map would give."""
    shares = next((r.attention_regions for r in rows if r.attention_regions), None)
    text = ("Attention on object inside / outline / background: the heads-averaged [CLS] attention's mass on patches wholly "
            "inside the object, on patches its outline crosses, and on patches with no object pixel (mean over the same images)")
    if shares:
        text += (f"; a uniform map puts {shares['inside_share']:.2f} / {shares['outline_share']:.2f} / "
                 f"{shares['background_share']:.2f} there (the regions' shares of the patches)")
    return text + "."


AUC_SENTENCE = ("Object vs background AUC: per image, the share of (object patch, background patch) pairs in which the object "
                "patch gets more of that attention, averaged over the images: 1 when the map ranks the whole object above the "
                "background, 0 when it ranks the background above the object (a figure-ground map with its mass on the ground, "
                "which the IoU scores as low as a map that ignores the object), 0.5 when it does not separate them.")


def _cells(r: MaskedRow) -> list[str]:
    dist = " / ".join(f"{d:.1f}" for d in r.attention_distance) or "-"
    encoded = ", ".join(f"{name} {value:.2f}" for name, value in r.attribute_knn.items()) or "-"
    return [r.method, r.objective, str(r.steps), _fmt(r.train_seconds, 0), _fmt(r.knn_k20), _fmt(r.linear_top1), encoded, _fmt(r.effective_rank, 1),
            _fmt(r.attention_iou), _fmt(r.mask_patches, 1), _fmt(r.centre_prior_iou), _regions(r.attention_regions), _fmt(r.object_background_auc), dist, r.status]


def write_study(study_dir: Path, rows: list[MaskedRow], meta: dict[str, Any], pictures: dict[str, Any] | None = None) -> None:
    study_dir = Path(study_dir)
    budget = meta.get("budget", {})
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    init = rows[0] if rows and rows[0].status == "reference" else None
    verdicts = []
    if init is not None and init.attention_iou is not None:
        for r in rows[1:]:
            if r.attention_iou is not None:
                word = iou_verdict(r.attention_iou, init.attention_iou, r.iou_gain, r.iou_gain_se)
                gain = ""
                if r.iou_gain is not None and r.iou_gain_se:
                    gain = (f" (paired over the same images: {r.iou_gain:+.3f} ± {r.iou_gain_se:.3f} standard error, "
                            f"{abs(r.iou_gain) / r.iou_gain_se:.1f} standard errors)")
                prior = ""
                if r.centre_prior_iou is not None:
                    side = "above" if r.attention_iou > r.centre_prior_iou else "not above"
                    prior = f"; {side} a centre mask of its size ({r.centre_prior_iou:.3f})"
                verdicts.append(f"{r.method}: attention IoU {r.attention_iou:.3f}, {word} the initial ViT's {init.attention_iou:.3f}{gain}{prior}.")
    if meta.get("centre_prior_iou") is not None:
        verdicts.append(f"Centre prior: a fixed mask of the {meta['centre_prior_patches']} patches nearest the image centre (the initial "
                        f"ViT's mask size) scores IoU {meta['centre_prior_iou']:.3f}; an attention mask finds the object only "
                        "when it beats a centre mask of its own size (the table's column: on centred objects a smaller mask "
                        "scores higher), not merely the initial ViT.")
    verdicts += [f"{r.method} reconstructions (reconstructions.png): hidden-patch MSE {r.masked_mse:.4f} against "
                 f"{_fmt(r.fill_mse, 4)} for each image's mean visible colour." for r in rows if r.masked_mse is not None]
    head = [f"# MAE vs I-JEPA vs DINO on one ViT, {meta.get('data', '?')}", "",
            "Budget per run: " + ", ".join(f"{v} {k}" for k, v in budget.items()) + "."
            + (" Overrides: " + ", ".join(f"{k} = {v}" for k, v in meta.get("overrides", {}).items()) + "." if meta.get("overrides") else "")
            + (f" Backbone: {meta['backbone']}." if meta.get("backbone") else ""),
            f"Attention IoU: the smallest set of patches holding 60 % of the last layer's heads-averaged [CLS] attention vs the object "
            f"mask downsampled to the patch grid (a patch is object when >= half of it is), mean over the first {meta.get('iou_images')} "
            f"probe images; attention distance: attention-weighted mean pixel distance between query and key patches, per layer "
            f"(first to last), heads averaged, over {meta.get('distance_images')} probe images.  k-NN and linear: the run's report "
            "(the method's own evaluation feature); the initial ViT row uses its [CLS] token.  k-NN@20 by attribute: the same k-NN "
            "on each other attribute the data records (what the feature encodes besides the class).",
            "", _regions_sentence(rows), "", AUC_SENTENCE, ""] + verdicts + [""]
    (study_dir / "table.md").write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    with open(study_dir / "table.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(_cells(r))
    (study_dir / "study.json").write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2), encoding="utf-8")
    if pictures and pictures.get("images") is not None:  # the figure's inputs, so it can be redrawn (redraw_figure)
        arrays = {"images": pictures["images"]}
        if pictures.get("objects") is not None:
            arrays["objects"] = pictures["objects"]
        for i, (label, m) in enumerate(pictures.get("maps", {}).items()):
            arrays[f"map_{i}"], arrays[f"mask_{i}"] = m, pictures["masks"][label]
        np.savez_compressed(study_dir / "pictures.npz", labels=np.array(list(pictures.get("maps", {}))), **arrays)
    draw_figure(rows, pictures or {}, study_dir / "figure.png", title=f"Attention after training, {meta.get('data', '?')} "
                + "(" + ", ".join(f"{v} {k}" for k, v in budget.items()) + " per run)")


def redraw_figure(study_dir: str | Path) -> Path:
    """Draw figure.png again from a study folder's study.json and pictures.npz."""
    study_dir = Path(study_dir)
    meta = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
    rows = [MaskedRow(**r) for r in meta.pop("rows")]
    pictures: dict[str, Any] = {"maps": {}, "masks": {}, "images": None, "objects": None}
    path = study_dir / "pictures.npz"
    if path.exists():
        with np.load(path) as z:
            pictures["images"] = z["images"]
            pictures["objects"] = z["objects"] if "objects" in z else None
            for i, label in enumerate(z["labels"].tolist()):
                pictures["maps"][label], pictures["masks"][label] = z[f"map_{i}"], z[f"mask_{i}"]
    budget = meta.get("budget", {})
    draw_figure(rows, pictures, study_dir / "figure.png", title=f"Attention after training, {meta.get('data', '?')} "
                + "(" + ", ".join(f"{v} {k}" for k, v in budget.items()) + " per run)")
    return study_dir / "figure.png"


def draw_figure(rows: list[MaskedRow], pictures: dict[str, Any], path: Path, title: str = "Masked study") -> None:
    """One row per method: the heads-averaged [CLS] attention over the same probe images, the 60 % mask
    outlined in white and the object in green; on the right, mean attention distance per layer."""
    from PIL import Image, ImageDraw

    scale = 3
    images = pictures.get("images")
    maps, masks, objects = pictures.get("maps", {}), pictures.get("masks", {}), pictures.get("objects")
    n_img = 0 if images is None else len(images)
    tile = 32 * scale if images is None else images.shape[-1] * scale
    left, top, gap = 230, 56, 6
    chart_w = 300
    labelled = [r for r in rows if r.method in maps]
    n_rows = 1 + len(labelled)
    width = left + n_img * (tile + gap) + 40 + chart_w + 20
    height = top + n_rows * (tile + gap) + 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    f_title, f, f_small = font(18), font(13), font(11)
    d.text((12, 12), title, fill="black", font=f_title)

    def paste(arr: np.ndarray, x: int, y: int) -> None:
        img.paste(Image.fromarray(arr), (x, y))

    if images is not None:
        d.text((12, top + tile // 2 - 8), "probe images", fill="black", font=f)
        for j in range(n_img):
            pic = attention.upscale(attention.to_hwc_uint8(images[j]), scale)
            if objects is not None:
                pic = attention.outline(pic, objects[j], (40, 220, 90), width=2)
            paste(pic, left + j * (tile + gap), top)
    for i, r in enumerate(labelled):
        y = top + (i + 1) * (tile + gap)
        d.text((12, y + 10), r.method, fill="black", font=f)
        d.text((12, y + 30), f"IoU: {_fmt(r.attention_iou)}", fill=(90, 90, 90), font=f_small)
        if r.knn_k20 is not None:
            d.text((12, y + 46), f"k-NN@20: {_fmt(r.knn_k20)}", fill=(90, 90, 90), font=f_small)
        for j in range(n_img):
            base = attention.upscale(attention.to_hwc_uint8(images[j]), scale)
            pic = attention.heat_overlay(base, maps[r.method][j], alpha=0.65)
            pic = attention.outline(pic, masks[r.method][j], (255, 255, 255), width=1)
            if objects is not None:
                pic = attention.outline(pic, objects[j], (40, 220, 90), width=1)
            paste(pic, left + j * (tile + gap), y)
    # mean attention distance per layer
    cx, cy, ch = left + n_img * (tile + gap) + 40, top + 20, max(120, n_rows * (tile + gap) - 60)
    dist_rows = [r for r in rows if r.attention_distance]
    d.text((cx, top - 4), "mean attention distance (px) per layer", fill="black", font=f)
    d.rectangle([cx, cy, cx + chart_w, cy + ch], outline=(200, 200, 200))
    colours = [(120, 120, 120), (214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189)]
    if dist_rows:
        # the y axis spans the data (distances of near-uniform attention all sit near the grid's mean distance)
        lo_d = min(min(r.attention_distance) for r in dist_rows)
        hi_d = max(max(r.attention_distance) for r in dist_rows)
        pad = max(0.5, 0.1 * (hi_d - lo_d))
        lo_d, top_d = max(0.0, lo_d - pad), hi_d + pad
        depth = max(len(r.attention_distance) for r in dist_rows)
        for k, r in enumerate(dist_rows):
            colour = colours[k % len(colours)]
            pts = [(cx + (chart_w * (l + 0.5) / depth), cy + ch - ch * (v - lo_d) / (top_d - lo_d)) for l, v in enumerate(r.attention_distance)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for px, py in pts:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            d.text((cx + 6, cy + ch + 6 + 14 * k), r.method, fill=colour, font=f_small)
        d.text((cx - 34, cy - 2), f"{top_d:.1f}", fill=(120, 120, 120), font=f_small)
        d.text((cx - 34, cy + ch - 10), f"{lo_d:.1f}", fill=(120, 120, 120), font=f_small)
        d.text((cx + chart_w - 60, cy + ch + 6), f"layers 1-{depth}", fill=(120, 120, 120), font=f_small)
    d.text((12, height - 22), "heat: last-layer [CLS] attention, heads averaged; white: 60 %-mass mask; green: object patches",
           fill=(90, 90, 90), font=f_small)
    img.save(path)


__all__ = ["METHODS", "MaskedRow", "draw_figure", "draw_reconstructions", "mean_fill_mse", "redraw_figure", "run_masked_study", "write_study"]
