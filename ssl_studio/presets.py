"""Presets: ready-made run configurations in ``resources/presets/*.toml``.

A preset is an ordinary run config with an extra ``[preset]`` table holding its
title and a description of what should happen and why.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ssl_studio.params import ConfigError


def resources_dir() -> Path:
    """``resources/`` of a source checkout, else the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "resources"
    if checkout.is_dir():
        return checkout
    installed = here / "resources"
    return installed


def presets_dir() -> Path:
    return resources_dir() / "presets"


@dataclass
class PresetInfo:
    name: str
    path: Path
    title: str
    description: str
    group: str  # "healthy" or "broken"
    twin: str  # the preset this one breaks or repairs
    expected: str = "none"  # representational collapse | dimensional collapse | slower learning | none


def list_presets() -> list[PresetInfo]:
    out = []
    for path in sorted(presets_dir().glob("*.toml")):
        try:
            header = tomllib.loads(path.read_text(encoding="utf-8")).get("preset", {})
        except tomllib.TOMLDecodeError:
            continue
        out.append(PresetInfo(path.stem, path, header.get("title", path.stem), header.get("description", ""),
                              header.get("group", "healthy"), header.get("twin", ""),
                              header.get("expected", "none")))
    return out


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return path
    candidate = presets_dir() / f"{name}.toml"
    if not candidate.is_file():
        known = ", ".join(p.name for p in list_presets())
        raise ConfigError("--preset", f"{name!r} is not a preset (known: {known})")
    return candidate
