"""The ``--try`` argument of the tuning benchmarks (`proxy_tune`, `sharing_tune`): ``name:key=value,...``, the
fields of a frozen dataclass (a task or a `SharingConfig`) replaced in a base value."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def _value(text: str) -> Any:
    """``none`` -> None; an int, then a float, when it reads as one; else the string (a mode's name)."""
    if text == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_try(text: str, base: T) -> tuple[str, T]:
    """``name:key=value,...`` -> (name, ``base`` with those fields replaced); an unknown field exits with the list."""
    fields = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
    name, _, spec = text.partition(":")
    changes: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown {type(base).__name__} field {key!r} in {text!r}; fields: {', '.join(fields)}")
        changes[key] = _value(value)
    return name, dataclasses.replace(base, **changes)  # type: ignore[type-var]
