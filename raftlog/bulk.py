"""Building many instances of a slotted (frozen) dataclass at once, one column at a time.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__`` and then runs ``__post_init__``: about 0.4 us per object, which
is most of the per-entry cost of a 100-entry batch (docs/PERFORMANCE.md, "Batched
appends: per-entry cost"). ``build`` makes the objects with ``object.__new__`` and sets
each field with its slot's own descriptor, every loop a ``map`` running in C.

Contract: the caller has already checked every value exactly as the class's
``__post_init__`` would (``build`` checks nothing and runs no ``__init__``); the result
is then indistinguishable from constructed instances (equality, hashing, repr,
immutability: the slots are the same slots). Every field must be given. Pure; any
thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import fields
from itertools import repeat
from types import MemberDescriptorType
from typing import Any, TypeVar

__all__ = ["build"]

T = TypeVar("T")

_new = object.__new__


_SETTERS: dict[type[Any], dict[str, Callable[[Any, Any], None]]] = {}  # a cache


def _setters(cls: type[Any]) -> dict[str, Callable[[Any, Any], None]]:
    """Field name -> its slot's setter; ValueError unless ``cls`` is a slotted dataclass.
    Cached (two threads may both fill the cache once: the same value)."""
    found = _SETTERS.get(cls)
    if found is not None:
        return found
    out: dict[str, Callable[[Any, Any], None]] = {}
    for f in fields(cls):
        slot = cls.__dict__.get(f.name)
        if not isinstance(slot, MemberDescriptorType):
            raise ValueError(f"{cls.__name__}.{f.name} is not a slot")
        out[f.name] = slot.__set__
    _SETTERS[cls] = out
    return out


def build(cls: type[T], **columns: Sequence[Any]) -> list[T]:
    """``[cls(**{name: column[i] for name, column in columns.items()}) for i ...]`` for
    already-valid columns of equal length, without running ``__init__``. ValueError when
    ``cls`` is not a slotted dataclass, a field is missing or unknown or the columns
    differ in length (all programming errors)."""
    setters = _setters(cls)
    if setters.keys() != columns.keys():
        raise ValueError(
            f"{cls.__name__} needs exactly the columns {list(setters)}, got {list(columns)}"
        )
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of {cls.__name__} differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    objs: list[T] = list(map(_new, repeat(cls, n)))
    for name, column in columns.items():
        deque(map(setters[name], objs, column), maxlen=0)
    return objs
