"""Which prompt templates a data set's class names get: each source's captions have their own phrasing.

The engine chooses them (it knows the data sources) and hands them to an image-text objective through
``ObjectiveContext.prompt_templates``; the zero-shot protocol and the window start from the same choice.
"""

from __future__ import annotations

from typing import Sequence

from ssl_studio.data.shapes import SHAPES
from ssl_studio.objectives.clip import DIGITS_TEMPLATES, GENERIC_TEMPLATES, SHAPES_TEMPLATES


def default_templates(class_names: Sequence[str] | None) -> tuple[str, ...]:
    """Prompt templates for these classes: the shapes and digits sets get their own phrasing."""
    names = list(class_names or [])
    if names == [str(i) for i in range(10)]:
        return DIGITS_TEMPLATES
    if names and set(names) <= set(SHAPES):
        return SHAPES_TEMPLATES
    return GENERIC_TEMPLATES


__all__ = ["default_templates"]
