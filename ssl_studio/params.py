"""Declared, validated parameters: one mechanism for the run config and every objective.

A parameter is an ordinary dataclass field whose metadata carries its help text,
unit and allowed range.  The CLI validates with it, the GUI builds its forms from
it, and the TOML reader checks unknown keys against it, so a parameter's default,
range and meaning are written exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A user-facing configuration mistake, phrased as one sentence naming the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field} {message}" if field else message)


def param(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    choices: tuple | None = None,
    unit: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with the metadata that validation and the GUI read."""
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": choices,
        "unit": unit,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (cached: resolving them dominates validating a config)."""
    return typing.get_type_hints(cls)


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _type_name(tp: Any) -> str:
    tp = _base_type(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters so one sentence stays one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_text(path: str, value: str) -> str:
    """Text that TOML can hold and the file system can take: no NUL, no undecodable bytes."""
    if "\x00" in value:
        raise ConfigError(path, f"must not contain a NUL character, got {short_repr(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: a byte that was not UTF-8 (e.g. a file name in Latin-1)
        bad = value[exc.start]
        byte = f"0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"U+{ord(bad):04X}"
        raise ConfigError(path, f"holds the byte {byte}, which is not UTF-8 text (at character {exc.start + 1} of {short_repr(value)}); "
                                "rename the file or folder to a UTF-8 name, or pass a path without it") from None
    return value


def coerce_value(path: str, value: Any, tp: Any) -> Any:
    """Convert a TOML/CLI value to the declared type, or raise ConfigError naming ``path``."""
    if value is None:
        if _allows_none(tp):
            return None
        raise ConfigError(path, f"must be {_type_name(tp)}, got nothing")
    base = _base_type(tp)
    origin = typing.get_origin(base)
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(path, f"must be true or false, got {short_repr(value)}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(path, f"must be an integer, got {short_repr(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(path, f"must be an integer, got {short_repr(value)}")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(path, f"must be a number, got {short_repr(value)}")
        if isinstance(value, (int, float, str)):
            try:
                return float(value)
            except OverflowError:  # an integer too large for a float
                raise ConfigError(path, f"must be a number of reasonable size, got {short_repr(value)}") from None
            except ValueError:
                pass
        raise ConfigError(path, f"must be a number, got {short_repr(value)}")
    if base is str:
        if isinstance(value, str):
            return _checked_text(path, value)
        raise ConfigError(path, f"must be a string, got {short_repr(value)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"must be a list, got {short_repr(value)}")
        args = typing.get_args(base)
        item_tp = args[0] if args else Any
        if item_tp is Any:
            items = list(value)
        else:
            items = [coerce_value(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return value


def check_range(path: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    """Raise ConfigError when ``value`` is outside the field's declared range or choices."""
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(path, f"must be one of {allowed}, got {short_repr(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be a finite number, got {short_repr(value)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("min_exclusive") and value <= lo:
            raise ConfigError(path, f"must be > {_number(lo)}, got {_number(value)}")
        if not meta.get("min_exclusive") and value < lo:
            raise ConfigError(path, f"must be >= {_number(lo)}, got {_number(value)}")
    if hi is not None and value > hi:
        raise ConfigError(path, f"must be <= {_number(hi)}, got {_number(value)}")


def _number(value: float) -> str:
    """A bound or value as people write it (-1, 0.5, 1e-08); integers of any size stay exact."""
    if isinstance(value, int):
        return short_repr(value, 30)
    return f"{value:g}"


def from_mapping(cls: type, data: typing.Mapping[str, Any], path: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad values are errors."""
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(sub, f"is not a known setting (known: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, typing.Mapping):
                raise ConfigError(sub, f"must be a table of settings ([{sub}] in a TOML file, or --set {sub}.KEY=VALUE), got {short_repr(value)}")
            kwargs[key] = from_mapping(tp, value, sub)
        else:
            kwargs[key] = coerce_value(sub, value, tp)
    obj = cls(**kwargs)
    validate(obj, path)
    return obj


def validate(obj: Any, path: str = "") -> None:
    """Check every field of a (possibly nested) dataclass against its declared range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        sub = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            validate(value, sub)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                check_range(f"{sub}[{i}]", v, f.metadata)
        else:
            check_range(sub, value, f.metadata)


def to_mapping(obj: Any) -> dict[str, Any]:
    """A plain dict of a dataclass, with tuples as lists and ``None`` values left out (TOML has no null)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            out[f.name] = to_mapping(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """What a form needs to show one parameter."""

    name: str
    type: Any
    default: Any
    help: str
    unit: str
    min: float | None
    max: float | None
    choices: tuple | None


def describe(cls: type) -> list[ParamSpec]:
    """The parameters of a dataclass, in declaration order, for building a form."""
    hints = _type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        specs.append(
            ParamSpec(
                name=f.name,
                type=_base_type(hints[f.name]),
                default=default,
                help=f.metadata.get("help", ""),
                unit=f.metadata.get("unit", ""),
                min=f.metadata.get("min"),
                max=f.metadata.get("max"),
                choices=f.metadata.get("choices"),
            )
        )
    return specs
