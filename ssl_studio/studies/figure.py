"""Small PIL drawing helpers shared by the studies' figures (matplotlib is not a dependency)."""

from __future__ import annotations


def font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def score_colour(value: float | None, lo: float, hi: float) -> tuple[int, int, int]:
    """White (worst) to a saturated blue (best) for a heat-table cell."""
    if value is None or hi <= lo:
        return (235, 235, 235)
    t = min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return (int(255 - 190 * t), int(255 - 120 * t), 255)
