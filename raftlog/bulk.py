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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from itertools import repeat
from operator import attrgetter
from types import MemberDescriptorType
from typing import Any, TypeVar, overload

__all__ = ["Columns", "build", "columns_of"]

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


class Columns(Sequence[T]):
    """An immutable sequence of ``cls`` instances held as one tuple per field (the
    columns), for batches of many small records: the records are made only when asked
    for (``__getitem__``, ``__iter__``, ``items``), and the columns are plain tuples of
    bytes, str and None, which the garbage collector stops tracking after its first pass.
    Per-record objects that live as long as a Raft round trip are what made most of the
    collector's full passes (docs/PERFORMANCE.md, "Batched appends: per-entry cost").

    Compares equal to the tuple of the same records (and to equal ``Columns``), hashes
    as that tuple, and shows as it. Contract: as ``build``, the caller has checked every
    value as ``cls`` would. Pure; any thread (immutable)."""

    __slots__ = ("_cls", "_columns", "_len")

    def __init__(self, cls: type[T], **columns: Sequence[Any]) -> None:
        setters = _setters(cls)
        if setters.keys() != columns.keys():
            raise ValueError(
                f"{cls.__name__} needs exactly the columns {list(setters)}, got {list(columns)}"
            )
        frozen = {name: tuple(column) for name, column in columns.items()}
        lengths = {len(column) for column in frozen.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of {cls.__name__} differ in length: {sorted(lengths)}")
        self._cls = cls
        self._columns = frozen
        self._len = lengths.pop() if lengths else 0

    @property
    def cls(self) -> type[T]:
        return self._cls

    def column(self, name: str) -> tuple[Any, ...]:
        """The values of field ``name``, in order (KeyError for an unknown field)."""
        return self._columns[name]

    def items(self) -> tuple[T, ...]:
        """The records, made now (a new tuple each call)."""
        return tuple(build(self._cls, **self._columns))

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Columns[T]: ...

    def __getitem__(self, index: int | slice) -> T | Columns[T]:
        if isinstance(index, slice):
            return Columns(self._cls, **{n: c[index] for n, c in self._columns.items()})
        one = {n: (c[index],) for n, c in self._columns.items()}  # IndexError as a tuple's
        return build(self._cls, **one)[0]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Columns):
            return self._cls is other._cls and self._columns == other._columns
        if isinstance(other, tuple):
            return self.items() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.items())

    def __repr__(self) -> str:
        return repr(self.items())


def columns_of(records: Sequence[Any], *names: str) -> list[Sequence[Any]]:
    """The values of each field of ``names`` across ``records``, one sequence per name:
    a ``Columns``' own columns (nothing is made), else read off each record."""
    if isinstance(records, Columns):
        return [records.column(name) for name in names]
    return [list(map(attrgetter(name), records)) for name in names]
