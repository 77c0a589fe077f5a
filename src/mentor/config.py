"""Typed configs from plain mappings (YAML sections, CLI options), with did-you-mean errors.

``from_mapping(Cls, mapping, where)`` builds the dataclass ``Cls`` from ``mapping``; a key that
is not one of its fields raises ``ConfigKeyError`` naming ``where`` and the key, with the closest
field as a hint -- the same message ``mentor.train.config.validate`` gives for training configs.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigKeyError(ValueError):
    """A config key that no field takes."""


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_keys(
    mapping: Mapping[str, Any], known: Iterable[str], where: str, error: type[Exception] = ConfigKeyError, prefix: str = ""
) -> None:
    """Raise ``error`` for the first key of ``mapping`` not in ``known`` (named ``prefix + key``)."""
    known = list(known)
    for key in mapping:
        if key not in known:
            raise error(f"{where}: unknown key {prefix + str(key)!r}{did_you_mean(str(key), known)}")


def from_mapping(
    cls: type[T], mapping: Mapping[str, Any] | None, where: str, error: type[Exception] = ConfigKeyError, prefix: str = ""
) -> T:
    """``cls(**mapping)`` after checking every key against the dataclass's fields."""
    if mapping is not None and not isinstance(mapping, Mapping):
        raise error(f"{where}: {prefix.rstrip('.') or 'config'!r} must be a mapping")
    mapping = dict(mapping or {})
    check_keys(mapping, field_names(cls), where, error, prefix)
    return cls(**mapping)
