"""Invariant checkers for the fault suite's histories.

Every check returns a list of :class:`Violation` (empty = pass). The object under test is
one replicated append-only log: an append of a unique value returns the offset it got; a
read returns every entry from offset 0, in order. ``final_logs`` maps node -> that node's
final copy of the log (collected after the cluster converged), ``digests`` node -> its
state digest.

Invariants:

* H0 the history is well formed (unique append values, ok reads carry their values).
* I1 no acknowledged append is lost.
* I2 an acknowledged offset is where the value ends up.
* I3 the final log has no duplicates and no phantoms (values nobody tried to append).
* I4 replicas never diverge (final logs and digests equal; every ok read is a prefix).
* I5 quorum reads are linearizable (see :func:`check_quorum_reads`).
* I6 at most one leader per term; a node's term never decreases (:func:`check_leaders`).
* I7 definite failures really failed (a "fail" append's value is not in the log).
* I8 liveness: an operation succeeds within a bound after the faults end.
* I11 no damaged value is answered with 200 (:func:`check_no_damaged_reads`).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tests.fault.harness.history import History, Op

INF = math.inf
RAFT_EVENT_MARKER = "RAFT_EVENT"


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


HistoryLike = History | Iterable[Op]


# -- helpers ------------------------------------------------------------------------------


def _ops(history: HistoryLike) -> list[Op]:
    return history.snapshot() if isinstance(history, History) else list(history)


def _t(x: float) -> str:
    return "inf" if x == INF else "-inf" if x == -INF else f"{x:.6f}"


def _desc(op: Op) -> str:
    return f"(process {op.process}, node {op.node}, [{_t(op.invoke)}, {_t(op.complete)}])"


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at offset {i}: {x!r} vs {y!r}"
    return f"one is a prefix of the other (lengths {len(a)} vs {len(b)})"


def reference_log(final_logs: dict[str, list[str]]) -> list[str]:
    """The first node's final log: the reference for I1-I3, I5, I7 (I4 checks the rest)."""
    return next(iter(final_logs.values()))


class _Context:
    """Indexes shared by the checks, built once per (history, final log)."""

    def __init__(self, history: HistoryLike, final: list[str]) -> None:
        self.ops = _ops(history)
        self.final = final

    @cached_property
    def pos(self) -> dict[str, int]:
        """value -> its first offset in the final log."""
        pos: dict[str, int] = {}
        for i, v in enumerate(self.final):
            pos.setdefault(v, i)
        return pos

    @cached_property
    def appends(self) -> list[Op]:
        return [op for op in self.ops if op.kind == "append"]

    @cached_property
    def appends_by_value(self) -> dict[str, list[Op]]:
        by_value: dict[str, list[Op]] = defaultdict(list)
        for op in self.appends:
            if op.value is not None:
                by_value[op.value].append(op)
        return dict(by_value)

    @cached_property
    def ok_reads(self) -> list[Op]:
        return [
            op
            for op in self.ops
            if op.kind == "read" and op.outcome == "ok" and op.read_values is not None
        ]

    @cached_property
    def prefix_reads(self) -> list[Op]:
        """The ok reads whose values are a prefix of the final log."""
        final, n = self.final, len(self.final)
        out = []
        for op in self.ok_reads:
            rv = op.read_values
            assert rv is not None
            if len(rv) <= n and (not rv or rv[-1] == final[len(rv) - 1]) and rv == final[: len(rv)]:
                out.append(op)
        return out


# -- H0: well-formed history ----------------------------------------------------------------


def _check_history(ctx: _Context) -> list[Violation]:
    out: list[Violation] = []
    for value, ops in ctx.appends_by_value.items():
        if len(ops) > 1:
            out.append(
                Violation("H0", f"value {value!r} appended by {len(ops)} ops (must be unique)")
            )
    for op in ctx.ops:
        if op.kind == "append" and op.value is None:
            out.append(Violation("H0", f"append without a value {_desc(op)}"))
        elif op.kind == "read" and op.outcome == "ok" and op.read_values is None:
            out.append(Violation("H0", f"ok read without read_values {_desc(op)}"))
        if op.complete < op.invoke:
            out.append(Violation("H0", f"op completes before it is invoked {_desc(op)}"))
    return out


def check_history(history: HistoryLike) -> list[Violation]:
    """H0: append values unique, ok reads have values, invoke <= complete."""
    return _check_history(_Context(history, []))


# -- I4: replicas ---------------------------------------------------------------------------


def check_replicas(final_logs: dict[str, list[str]], digests: dict[str, str]) -> list[Violation]:
    """I4 (replica half): every node's final log and every digest are equal."""
    if not final_logs:
        return [Violation("I4", "no final logs to compare")]
    out: list[Violation] = []
    (ref_node, ref), *others = final_logs.items()
    for node, log in others:
        if log != ref:
            out.append(
                Violation(
                    "I4",
                    f"final log of {node} (length {len(log)}) differs from {ref_node}'s "
                    f"(length {len(ref)}): {_first_difference(log, ref)}",
                )
            )
    if len(set(digests.values())) > 1:
        groups: dict[str, list[str]] = defaultdict(list)
        for node, digest in digests.items():
            groups[digest].append(node)
        detail = "; ".join(f"{d!r}: {sorted(nodes)}" for d, nodes in groups.items())
        out.append(Violation("I4", f"replica digests differ: {detail}"))
    return out


def _check_read_prefixes(ctx: _Context) -> list[Violation]:
    ok_prefix = {id(op) for op in ctx.prefix_reads}
    out: list[Violation] = []
    for op in ctx.ok_reads:
        if id(op) in ok_prefix:
            continue
        rv = op.read_values
        assert rv is not None
        out.append(
            Violation(
                "I4",
                f"{op.consistency} read {_desc(op)} returned {len(rv)} values that are not a "
                f"prefix of the final log (length {len(ctx.final)}): "
                f"{_first_difference(rv, ctx.final)}",
            )
        )
    return out


def check_read_prefixes(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I4 (read half): every ok read, of any consistency, is a prefix of the final log."""
    return _check_read_prefixes(_Context(history, final_log))


# -- I1, I2, I3, I7 -------------------------------------------------------------------------


def _check_lost(ctx: _Context) -> list[Violation]:
    return [
        Violation(
            "I1",
            f"acknowledged append {op.value!r} {_desc(op)} (offset {op.offset}) "
            f"is missing from the final log",
        )
        for op in ctx.appends
        if op.outcome == "ok" and op.value is not None and op.value not in ctx.pos
    ]


def check_lost(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I1: every ok append's value is in the final log."""
    return _check_lost(_Context(history, final_log))


def _check_offsets(ctx: _Context) -> list[Violation]:
    out: list[Violation] = []
    for op in ctx.appends:
        if op.outcome != "ok" or op.value is None or op.value not in ctx.pos:
            continue  # a lost value is I1's
        actual = ctx.pos[op.value]
        if op.offset is None:
            out.append(Violation("I2", f"ok append {op.value!r} {_desc(op)} has no offset"))
        elif op.offset != actual:
            out.append(
                Violation(
                    "I2",
                    f"append {op.value!r} {_desc(op)} was acknowledged at offset {op.offset} "
                    f"but is at offset {actual} in the final log",
                )
            )
    return out


def check_offsets(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I2: an ok append's returned offset is its position in the final log."""
    return _check_offsets(_Context(history, final_log))


def _check_duplicates_phantoms(ctx: _Context) -> list[Violation]:
    out: list[Violation] = []
    counts = Counter(ctx.final)
    for value, count in counts.items():
        if count > 1:
            offsets = [i for i, v in enumerate(ctx.final) if v == value]
            out.append(
                Violation("I3", f"value {value!r} appears {count} times, at offsets {offsets}")
            )
    for value, offset in ctx.pos.items():
        if value not in ctx.appends_by_value:
            out.append(
                Violation(
                    "I3", f"phantom value {value!r} at offset {offset}: no client appended it"
                )
            )
    return out


def check_duplicates_phantoms(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I3: values in the final log are unique and each was attempted by some append op.

    A value whose only append failed definitely is I7's, not a phantom.
    """
    return _check_duplicates_phantoms(_Context(history, final_log))


def _check_failed_absent(ctx: _Context) -> list[Violation]:
    out: list[Violation] = []
    for value, ops in ctx.appends_by_value.items():
        if value not in ctx.pos or any(op.outcome != "fail" for op in ops):
            continue
        for op in ops:
            out.append(
                Violation(
                    "I7",
                    f"append {value!r} {_desc(op)} failed definitely ({op.error}) but is at "
                    f"offset {ctx.pos[value]} in the final log",
                )
            )
    return out


def check_failed_absent(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I7: a value whose append outcome is "fail" is not in the final log."""
    return _check_failed_absent(_Context(history, final_log))


# -- I5: linearizable quorum reads ----------------------------------------------------------

# Bounds are compared as (time, k): time + k*eps for an infinitesimal eps > 0. That makes
# strict inequalities exact: "t > x" is "t >= (x, 1)", "t < x" is "t <= (x, -1)", and
# "t_p > t_{p-1}" is "t_p >= (t_{p-1}.time, t_{p-1}.k + 1)".
_Bound = tuple[float, int]


def _check_quorum_reads(ctx: _Context) -> list[Violation]:
    final = ctx.final
    n = len(final)

    # Append window of each position p of F: [inv[p], comp[p]].
    inv = [-INF] * n
    comp = [INF] * n
    for p, value in enumerate(final):
        if ctx.pos[value] != p:
            continue  # a later duplicate (I3): unconstrained
        ops = ctx.appends_by_value.get(value)
        if not ops:
            continue  # a phantom (I3): unconstrained
        # Normally exactly one op. A "fail" op in F is I7's; here it counts as unknown.
        cands = [op for op in ops if op.outcome != "fail"] or ops
        inv[p] = min(op.invoke for op in cands)
        comp[p] = max(op.complete if op.outcome == "ok" else INF for op in cands)

    # Read constraints. A read r of length L needs t_{L-1} < t_r < t_L, t_r in its window:
    # lower_at[L]: t_p > r.invoke for p >= L (strongest read per L kept);
    # upper_at[L-1]: t_p < r.complete for p <= L-1.
    reads = [op for op in ctx.prefix_reads if op.consistency == "quorum"]
    lower_at: dict[int, Op] = {}
    upper_at: dict[int, Op] = {}
    for r in reads:
        length = len(r.read_values or ())
        if length < n and (length not in lower_at or r.invoke > lower_at[length].invoke):
            lower_at[length] = r
        if length > 0:
            p = length - 1
            if p not in upper_at or r.complete < upper_at[p].complete:
                upper_at[p] = r

    # Greedy: earliest feasible t_p in log order against [lo_p, hi_p].
    suf_read_hi = [INF] * (n + 1)
    for p in range(n - 1, -1, -1):
        here = upper_at[p].complete if p in upper_at else INF
        suf_read_hi[p] = min(suf_read_hi[p + 1], here)
    read_lo = -INF
    prev: _Bound | None = None
    stuck_at: int | None = None
    for p in range(n):
        if p in lower_at:
            read_lo = max(read_lo, lower_at[p].invoke)
        lo: _Bound = max((inv[p], 0), (read_lo, 1))
        if prev is not None:
            lo = max(lo, (prev[0], prev[1] + 1))
        hi: _Bound = min((comp[p], 0), (suf_read_hi[p], -1))
        if lo > hi:
            stuck_at = p
            break
        prev = lo

    if stuck_at is None:
        return []

    # Infeasible: explain it. The greedy fails iff some lower bound at a position q
    # conflicts with some upper bound at a position p >= q; report each such conflict once,
    # at its upper-bound append (A), at its future-reading read (B) or at its stale read (C).
    out: list[Violation] = []

    # Prefix max of append invokes, with its position.
    pm_val = [-INF] * n
    pm_arg = [-1] * n
    best, arg = -INF, -1
    for p in range(n):
        if inv[p] > best:
            best, arg = inv[p], p
        pm_val[p], pm_arg[p] = best, arg

    # (A) appends: log order must agree with real-time order.
    for p in range(1, n):
        if comp[p] != INF and pm_val[p - 1] >= comp[p]:
            q = pm_arg[p - 1]
            out.append(
                Violation(
                    "I5",
                    f"log order contradicts real time: append {final[p]!r} at offset {p} "
                    f"completed at {_t(comp[p])}, but append {final[q]!r} at earlier offset "
                    f"{q} was invoked only at {_t(inv[q])}",
                )
            )

    # Suffix min of upper bounds (append completes and reads' completes) with the source.
    sm_val = [INF] * (n + 1)
    sm_src: list[tuple[str, int, Op | None]] = [("none", -1, None)] * (n + 1)
    for p in range(n - 1, -1, -1):
        sm_val[p], sm_src[p] = sm_val[p + 1], sm_src[p + 1]
        if comp[p] <= sm_val[p]:
            sm_val[p], sm_src[p] = comp[p], ("append", p, None)
        if p in upper_at and upper_at[p].complete <= sm_val[p]:
            sm_val[p], sm_src[p] = upper_at[p].complete, ("read", p, upper_at[p])

    for r in reads:
        length = len(r.read_values or ())
        # (B) everything the read saw must be placeable before it completed.
        if length > 0 and pm_val[length - 1] >= r.complete:
            q = pm_arg[length - 1]
            out.append(
                Violation(
                    "I5",
                    f"quorum read {_desc(r)} returned {length} entries including {final[q]!r} "
                    f"at offset {q}, whose append was invoked only at {_t(inv[q])}, not before "
                    f"the read completed (broke t_{q} < read.complete)",
                )
            )
        # (C) the first entry it did not see must be placeable after it was invoked.
        if length < n and sm_val[length] <= r.invoke:
            kind, p, other = sm_src[length]
            if kind == "append":
                why = (
                    f"append {final[p]!r} at offset {p} >= {length} completed at "
                    f"{_t(comp[p])}, before the read was invoked"
                )
            else:
                assert other is not None
                why = (
                    f"quorum read {_desc(other)} had already returned {p + 1} entries, "
                    f"completing before this read was invoked"
                )
            out.append(
                Violation(
                    "I5",
                    f"stale quorum read {_desc(r)}: returned {length} entries (not "
                    f"{final[length]!r} at offset {length}), but {why} "
                    f"(broke t_{length} > read.invoke)",
                )
            )

    if not out:  # cannot happen if the reasoning above is right; never pass silently
        out.append(
            Violation(
                "I5",
                f"no linearization of the quorum reads: the append at offset {stuck_at} "
                f"({final[stuck_at]!r}) has no feasible time",
            )
        )
    return out


def check_quorum_reads(history: HistoryLike, final_log: list[str]) -> list[Violation]:
    """I5: the quorum reads and the appends of ``final_log`` are linearizable.

    Only ok reads with consistency "quorum" that are prefixes of F = ``final_log`` take part
    (others are I4's). Appends in F are placed in log order: linearizability here means
    there are times t_0 < t_1 < ... < t_{n-1}, t_p inside the window of the append of
    F[p] -- [invoke, complete] if it was ok, [invoke, +inf) if its outcome is unknown
    (it took effect at some unknown time after it was sent) -- and, for each read r that
    returned L entries, a time t_r in [r.invoke, r.complete] with t_{L-1} < t_r < t_L
    (t_{-1} = -inf, t_n = +inf). Appends not in F did not take effect and are ignored.
    Windows are closed, so an op that completed at the very instant another was invoked
    precedes it.

    Reads are not ordered among themselves except through the appends, so a read only
    constrains the appends: t_r exists iff t_{L-1} < r.complete and t_L > r.invoke (the
    interval (t_{L-1}, t_L) meets [r.invoke, r.complete] exactly then). So every append at
    p >= L must take effect after r.invoke, and every append at p <= L-1 before r.complete:

        lo_p = max(invoke_p, max{r.invoke + eps : L_r <= p})
        hi_p = min(complete_p, min{r.complete - eps : L_r > p})

    and the question is whether an increasing sequence t_p in [lo_p, hi_p] exists. The
    greedy that gives each p the earliest time, t_p = max(lo_p, t_{p-1} + eps), is optimal
    (any feasible sequence is pointwise >= it), so the history is linearizable iff it never
    exceeds hi_p. eps is an exact infinitesimal (bounds are (time, k) pairs). Cost:
    O(n + reads) after the O(total read length) prefix check.

    When the greedy fails, some lower bound at position q conflicts with an upper bound
    at p >= q. Each kind of conflict is reported at one culprit:

    * two appends: F[q] invoked at or after F[p] (q < p) completed -- log order
      contradicts real time;
    * a read that saw F[q] completed at or before F[q]'s append was invoked;
    * a stale read of length L: an append at p >= L completed, or another quorum read
      that saw more than L entries completed, at or before the read was invoked.
    """
    return _check_quorum_reads(_Context(history, final_log))


# -- all history checks -----------------------------------------------------------------------


def check_all(
    history: HistoryLike, final_logs: dict[str, list[str]], digests: dict[str, str]
) -> list[Violation]:
    """H0, I4, I1, I2, I3, I7, I5 against the first node's final log."""
    ops = _ops(history)
    out = _check_history(_Context(ops, []))
    out += check_replicas(final_logs, digests)
    if not final_logs:
        return out
    ctx = _Context(ops, reference_log(final_logs))
    out += _check_lost(ctx)
    out += _check_offsets(ctx)
    out += _check_duplicates_phantoms(ctx)
    out += _check_failed_absent(ctx)
    out += _check_read_prefixes(ctx)
    out += _check_quorum_reads(ctx)
    return out


# -- I6: leaders ------------------------------------------------------------------------------


def parse_raft_events(log_text: str, boot: int) -> list[dict[str, Any]]:
    """The ``RAFT_EVENT {json}`` lines of a node's log, each tagged with ``boot``.

    The JSON object follows the marker on the same line (text after it is ignored).
    Lines whose JSON does not parse or lacks node/role/term -- e.g. the last line of a
    node killed mid-write -- are skipped.
    """
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    for line in log_text.splitlines():
        at = line.find(RAFT_EVENT_MARKER)
        if at < 0:
            continue
        rest = line[at + len(RAFT_EVENT_MARKER) :].lstrip()
        try:
            obj, _ = decoder.raw_decode(rest)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not {"node", "role", "term"} <= obj.keys():
            continue
        event = dict(obj)
        event["boot"] = boot
        events.append(event)
    return events


def _where(event: dict[str, Any]) -> str:
    return f"boot {event.get('boot', 0)}, wall_ms {event.get('wall_ms', 0)}"


def check_leaders(events: list[dict[str, Any]]) -> list[Violation]:
    """I6: at most one distinct leader per term; per node, terms never decrease.

    Each event is ``{"node", "role", "term", "wall_ms", "boot"}``; a node's events are
    ordered by (boot, wall_ms), ties kept in the given order.
    """
    out: list[Violation] = []
    leaders: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for e in events:
        if e["role"] == "leader":
            leaders[int(e["term"])].setdefault(str(e["node"]), e)
    for term in sorted(leaders):
        if len(leaders[term]) > 1:
            who = ", ".join(f"{node} ({_where(e)})" for node, e in sorted(leaders[term].items()))
            out.append(Violation("I6", f"term {term} has {len(leaders[term])} leaders: {who}"))

    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_node[str(e["node"])].append(e)
    for node in sorted(by_node):
        ordered = sorted(
            by_node[node], key=lambda e: (int(e.get("boot", 0)), int(e.get("wall_ms", 0)))
        )
        highest: dict[str, Any] | None = None
        for e in ordered:
            if highest is not None and int(e["term"]) < int(highest["term"]):
                out.append(
                    Violation(
                        "I6",
                        f"term of {node} decreased from {highest['term']} ({_where(highest)}) "
                        f"to {e['term']} ({_where(e)}, role {e['role']})",
                    )
                )
            elif highest is None or int(e["term"]) > int(highest["term"]):
                highest = e
    return out


# -- I8: liveness -----------------------------------------------------------------------------


def check_liveness(
    last_fault_end: float, first_ok_after: float | None, bound_s: float
) -> list[Violation]:
    """I8: some operation succeeded within ``bound_s`` seconds of the last fault's end."""
    if first_ok_after is None:
        return [
            Violation(
                "I8",
                f"no operation succeeded after the faults ended at {_t(last_fault_end)} "
                f"(bound {bound_s} s)",
            )
        ]
    delay = first_ok_after - last_fault_end
    if delay > bound_s:
        return [
            Violation(
                "I8",
                f"first success {delay:.3f} s after the faults ended, over the {bound_s} s bound",
            )
        ]
    return []


# -- I11: no damaged value answered with 200 ---------------------------------------------------


def check_no_damaged_reads(history: HistoryLike) -> list[Violation]:
    """I11: every value an ok read returned is one some client tried to append.

    Needs no final log, so it holds even when no healthy majority is left to compare
    with: a value no client wrote (one flipped byte of a stored or shipped value) is
    damage served as good data. (A real value at the wrong offset is I2's and I4's.)
    """
    ctx = _Context(history, [])
    out: list[Violation] = []
    for op in ctx.ok_reads:
        for offset, value in enumerate(op.read_values or ()):
            if value not in ctx.appends_by_value:
                out.append(
                    Violation(
                        "I11",
                        f"{op.consistency} read {_desc(op)} answered 200 with {value!r} at "
                        f"offset {offset}, a value no client appended",
                    )
                )
    return out
