"""The registry of objectives: one module per method, looked up by name."""

from __future__ import annotations

from ssl_studio.objectives.base import FAMILIES, Batch, Objective, ObjectiveContext, OptimRecipe, StepOutput
from ssl_studio.params import ConfigError

_MODULES = (
    "simclr",
    "align_uniform",
    "moco",
    "byol",
    "simsiam",
    "swav",
    "dino",
    "barlow",
    "vicreg",
    "mae",
    "ijepa",
    "clip",
    "supervised",
    "text_lm",
    "dae",
)


def all_objectives() -> dict[str, type[Objective]]:
    """Every objective class by name, in the order of the picker."""
    import importlib

    found: dict[str, type[Objective]] = {}
    for mod_name in _MODULES:
        mod = importlib.import_module(f"ssl_studio.objectives.{mod_name}")
        for value in vars(mod).values():
            if isinstance(value, type) and issubclass(value, Objective) and value is not Objective and value.__module__ == mod.__name__:
                found[value.name] = value
    return found


def get_objective(name: str) -> type[Objective]:
    objectives = all_objectives()
    if name not in objectives:
        raise ConfigError("objective.name", f"must be one of {', '.join(objectives)}, got {name!r}")
    return objectives[name]


__all__ = ["FAMILIES", "Batch", "Objective", "ObjectiveContext", "OptimRecipe", "StepOutput", "all_objectives", "get_objective"]
