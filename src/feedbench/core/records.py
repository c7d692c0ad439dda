"""Typed records that cross process boundaries as JSON, in one place.

A record is a dataclass; ``to_json`` gives plain JSON values and ``from_json`` reads them back,
refusing a key the class does not have (a typo is an error, never a silent ``None``). Nested
records are read back by the field's declared type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """Mixin for dataclasses that serialize to JSON."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: {type(data).__name__} given; expected a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; expected some of {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        values = {name: _read(hints[name], value) for name, value in data.items()}
        return cls(**values)


def _read(hint, value):
    """``value`` as ``hint`` says: a nested Record, or a ``dict[str, Record]`` of them, is read
    back; anything else is kept as it is."""
    if value is None:
        return None
    for option in _options(hint):
        if _is_record(option) and isinstance(value, dict):
            return option.from_json(value)
        if typing.get_origin(option) is dict and isinstance(value, dict):
            item = typing.get_args(option)[1:]
            if item and any(_is_record(o) for o in _options(item[0])):
                return {name: _read(item[0], entry) for name, entry in value.items()}
    return value


def _is_record(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def _options(hint) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)
