"""Reliability battery, malformed configs: every declared setting fuzzed by type and range.

Every field path of the run config and of every objective's parameter dataclass is enumerated from the
dataclasses themselves (nothing hand-listed), then fed hostile values through ``config_from_mapping`` and
through the ``--set`` parser.  The outcome is always a valid config that survives a TOML round trip, or a
``ConfigError`` naming the field; never another exception type.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssl_studio.cli import build_parser, config_from_args
from ssl_studio.config import RunConfig, config_from_mapping, config_to_mapping, dumps_toml
from ssl_studio.objectives import all_objectives
from ssl_studio.params import ConfigError

pytestmark = pytest.mark.reliability

FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@dataclass(frozen=True)
class FieldCase:
    """One setting: its dotted path, declared type and metadata, and the objective whose table holds it (if any)."""

    path: str
    type: Any
    meta: typing.Mapping[str, Any]
    objective: str | None = None

    def mapping(self, value: Any) -> dict[str, Any]:
        """A run-config mapping that sets only this field to ``value``."""
        section, _, key = self.path.rpartition(".")
        if self.objective is not None:
            return {"objective": {"name": self.objective, key: value}}
        return {section: {key: value}} if section else {key: value}

    def argv(self, text: str) -> list[str]:
        """``ssl-studio train`` arguments that set this field from the command line."""
        head = ["train", "--objective", self.objective] if self.objective is not None else ["train"]
        return [*head, "--set", f"{self.path}={text}"]

    @property
    def id(self) -> str:
        return f"{self.objective}:{self.path}" if self.objective else self.path


def _fields_of(cls: type, prefix: str, objective: str | None = None) -> list[FieldCase]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if cls is RunConfig and f.name == "objective":
            continue  # its name and parameters are enumerated from the objectives below
        if dataclasses.is_dataclass(tp):
            out += _fields_of(tp, f"{prefix}{f.name}.", objective)
        else:
            out.append(FieldCase(f"{prefix}{f.name}", tp, f.metadata, objective))
    return out


def every_field() -> list[FieldCase]:
    cases = _fields_of(RunConfig, "")
    cases.append(FieldCase("objective.name", str, {"choices": tuple(all_objectives())}))
    for name, cls in all_objectives().items():
        cases += _fields_of(cls.Params, "objective.", objective=name)
    return cases


FIELDS = every_field()
PARSER = build_parser()  # parse_args copies its defaults, so one parser serves every example
SECTIONS = [f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[f.name])]


def test_the_enumeration_covers_the_run_config_and_every_objective():
    paths = {c.id for c in FIELDS}
    assert {"batch_size", "data.resolution", "augment.blur_p", "optim.lr", "budget.steps", "model.width", "ablations"} <= paths
    assert {c.objective for c in FIELDS if c.objective} == {n for n, c in all_objectives().items() if dataclasses.fields(c.Params)}
    assert "simclr:objective.temperature" in paths and "dino:objective.teacher_temp" in paths
    assert len(FIELDS) > 100


def names_the_field(case: FieldCase, exc: ConfigError) -> bool:
    """The error points at this field: by its path (or an item of it), or in the sentence of a cross-field rule."""
    return exc.field == case.path or exc.field.startswith(case.path + "[") or case.path in exc.message


def check(case: FieldCase, build) -> None:
    """``build()`` gives a valid config that round-trips through TOML, or a one-line ConfigError naming the field."""
    try:
        cfg = build()
    except ConfigError as exc:
        assert names_the_field(case, exc), f"{case.id}: {exc.field!r} / {exc}"
        assert "\n" not in str(exc) and "Traceback" not in str(exc)
        return
    assert isinstance(cfg, RunConfig)
    written = dumps_toml(config_to_mapping(cfg)).encode("utf-8")  # what save_config puts on disk
    again = config_from_mapping(tomllib.loads(written.decode("utf-8")))
    assert again == cfg, f"{case.id} does not survive config.toml: {config_to_mapping(cfg)} -> {config_to_mapping(again)}"


# Values of every wrong type and the edges of every range: bool for int, str for float, list for str,
# tables for scalars, nan/inf, negative and huge sizes, undecodable bytes (a surrogate) and NUL.
HOSTILE = [True, False, "x", "", "3", [1], ["a", 2], {"a": 1}, {}, math.nan, math.inf, -math.inf, -1, -1.5, 0, 0.5, 1,
           10**30, -(10**30), 10**400, "1e999", "caf\udce9", "a\x00b", None]


@pytest.mark.parametrize("case", FIELDS, ids=lambda c: c.id)
def test_every_field_refuses_each_hostile_value_by_name(case):
    for value in HOSTILE:
        check(case, lambda: config_from_mapping(case.mapping(value)))


def _near_bounds(case: FieldCase) -> st.SearchStrategy:
    """Values at, just inside and just outside the field's declared range (or its choices)."""
    meta = case.meta
    edges: list[Any] = []
    for bound in (meta.get("min"), meta.get("max")):
        if bound is not None:
            edges += [bound, bound - 1, bound + 1, bound - 1e-9, bound + 1e-9, -bound, bound * 10]
    if meta.get("choices"):
        edges += list(meta["choices"]) + [str(c).upper() for c in meta["choices"] if c is not None]
    return st.sampled_from(edges) if edges else st.nothing()


ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=4), st.booleans()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.mark.parametrize("case", FIELDS, ids=lambda c: c.id)
@FUZZ
@given(data=st.data())
def test_fuzzed_values_give_a_config_or_an_error_naming_the_field(case, data):
    value = data.draw(st.one_of(ANY_VALUE, _near_bounds(case)), label=case.id)
    check(case, lambda: config_from_mapping(case.mapping(value)))


# What a person types after --set path=: TOML literals, bare words, numbers in every spelling.
SET_TEXT = st.one_of(
    st.text(max_size=12), st.integers(min_value=-(2**70), max_value=2**70).map(str), st.floats().map(repr),
    st.sampled_from(["true", "false", "[1, 2]", "[0.5, 0.5]", "['a']", "{a = 1}", "nan", "-inf", "''", "[]", '"x"', "1_000",
                     "0x10", "1e400", "=", "a=b", "[", "'unclosed"]),
)


@pytest.mark.parametrize("case", FIELDS, ids=lambda c: c.id)
@FUZZ
@given(text=SET_TEXT)
def test_set_flag_gives_a_config_or_an_error_naming_the_field(case, text):
    check(case, lambda: config_from_args(PARSER.parse_args(case.argv(text))))


@pytest.mark.parametrize("section", SECTIONS + ["objective"])
@pytest.mark.parametrize("value", [3, "simclr", True, [1, 2]], ids=["int", "str", "bool", "list"])
def test_a_section_given_a_scalar_is_one_sentence_naming_it(section, value):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({section: value})
    assert info.value.field == section and "must be a table" in str(info.value)


def test_written_text_settings_read_back_exactly():
    """Control characters, quotes and backslashes in a run's name survive config.toml (TOML escapes, not raw bytes)."""
    name = 'tab\there "quoted" back\\slash bell\x07 del\x7f newline\nend'
    cfg = config_from_mapping({"name": name, "data": {"source": "folder:C:\\data\\ünï"}})
    again = config_from_mapping(tomllib.loads(dumps_toml(config_to_mapping(cfg))))
    assert again.name == name and again.data.source == "folder:C:\\data\\ünï"
