"""Prometheus' compact series notation, for writing rule tests as promtool does.

``promtool test rules`` (docs/configuration/unit_testing_rules.md) writes a series as
space-separated terms, one sample per evaluation interval:

- ``a``: one sample;
- ``axn``: ``a`` n+1 times (shorthand for ``a+0xn``);
- ``a+bxn`` / ``a-bxn``: ``a``, then n further samples stepping by ``b``;
- ``_``: a missing sample; ``_xn``: n missing samples;
- ``stale``: a stale marker.

Here a missing sample becomes an explicit ``None`` in the snapshot and a stale one
removes the name altogether; both are NO_DATA to the engine. Booleans are written 0/1
and become ``bool`` for signals the catalogue types as bool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from probes.signals import CATALOGUE, SignalType, SignalValue


class Stale:
    """The stale marker: the signal is absent from the snapshot."""

    def __repr__(self) -> str:
        return "STALE"


STALE = Stale()
Sample = float | None | Stale

_TERM = re.compile(
    r"^(?P<start>[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
    r"(?:(?P<sign>[+-])(?P<step>\d+(?:\.\d+)?(?:e[+-]?\d+)?))?"
    r"(?:x(?P<count>\d+))?$"
)


def expand(notation: str) -> list[Sample]:
    """``'-2+4x3'`` -> ``[-2, 2, 6, 10]``; ``'1 _x3 stale'`` -> ``[1, None, None, None, STALE]``."""
    samples: list[Sample] = []
    for term in notation.split():
        if term == "stale":
            samples.append(STALE)
        elif term == "_":
            samples.append(None)
        elif term.startswith("_x"):
            samples.extend([None] * int(term[2:]))
        else:
            match = _TERM.match(term)
            if match is None:
                raise ValueError(f"not series notation: {term!r}")
            start = Decimal(match["start"])
            step = Decimal(match["step"] or 0) * (-1 if match["sign"] == "-" else 1)
            if match["step"] is not None and match["count"] is None:
                raise ValueError(f"a step needs a count: {term!r}")
            count = int(match["count"] or 0)
            # Decimal steps so that 0.1+0.1x2 gives 0.3, not 0.30000000000000004.
            samples.extend(float(start + step * k) for k in range(count + 1))
    return samples


def ticks(
    series: Mapping[str, str],
    *,
    base: Mapping[str, SignalValue] | None = None,
    interval: float = 0.25,
    start: float = 0.0,
) -> list[tuple[float, dict[str, SignalValue]]]:
    """Per-tick snapshots: ``base`` overridden by each series, as long as the longest.

    A series that is shorter than the longest goes stale (absent) after its end.
    """
    expanded = {name: expand(text) for name, text in series.items()}
    for name in expanded:
        if name not in CATALOGUE:
            raise KeyError(f"not a catalogue signal: {name}")
    length = max((len(values) for values in expanded.values()), default=0)
    result: list[tuple[float, dict[str, SignalValue]]] = []
    for index in range(length):
        snapshot: dict[str, SignalValue] = dict(base or {})
        for name, values in expanded.items():
            sample = values[index] if index < len(values) else STALE
            if isinstance(sample, Stale):
                snapshot.pop(name, None)
            elif sample is None:
                snapshot[name] = None
            elif CATALOGUE[name].type is SignalType.BOOL:
                snapshot[name] = sample != 0
            else:
                snapshot[name] = sample
        result.append((start + index * interval, snapshot))
    return result
