"""Windowed functions of the condition language, over a 1-second sample grid.

Theory of operation
-------------------
The engine is ticked every 250 ms and also at probe deadlines, so ticks are not evenly
spaced. Windowed functions must not depend on that spacing (a deadline tick must not
count twice), and a replay must give the same answers as the live run. So they do not
read ticks: they read **samples on a 1-second grid of the clock the engine is given**,
at the whole seconds ``g = ..., 11, 12, 13, ...``.

Sampling. The value of the sample at grid second ``g`` is the operand's value *in
effect at g*: the value computed at the last tick at or before ``g`` (sample and hold).
A Sampler learns it at the first tick at or after ``g``: if that tick is exactly at
``g`` the sample is that tick's value, otherwise it is the value held from the tick
before. Grid seconds before the first tick have no sample. A gap between ticks longer
than a second fills every grid second of the gap with the held value (at most as many as
the longest window needs). Everything is a function of the ``(now, value)`` sequence,
so it is deterministic for replay.

Window. ``f(x, w)`` evaluated at ``now`` reads the samples with ``now - w < g <= now``:
exactly ``w`` samples for a whole ``w`` once the session is ``w`` seconds old, fewer
before. The samples a window reads change only when a tick crosses a whole second, so a
windowed condition can change at most once a second. That is the point: "3 of the last
5 one-second samples" is the raise rule of DESIGN.md's indicator.

Missing data. A sample may be NO_DATA. A windowed function is NO_DATA when its newest
sample is NO_DATA (the input is missing *now*), or when no sample in the window has data;
otherwise it is computed over the samples that have data:

- ``count_over(x, w)``: how many samples are true (a number: non-zero);
- ``rises(x, w)``: how many samples are true while the one a second before was false;
- ``avg``, ``max``, ``min``: over the numbers;
- ``delta(x, w)``: newest minus oldest number; NO_DATA with fewer than two.

Edge: a grid second and a tick that differ by less than ``EPSILON`` are the same instant,
so ticks at 0.25 s steps that drift by float rounding still land on the grid.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Final

from alerts.expr import NO_DATA, Call, Evaluator, NoData, SnapshotLike, Value

GRID: Final = 1.0
EPSILON: Final = 1e-6


def grid_index(now: float) -> int:
    """The last whole second at or before ``now`` (within EPSILON)."""
    return math.floor(now + EPSILON)


def on_grid(now: float) -> bool:
    return abs(now - round(now)) <= EPSILON


class Sampler:
    """The 1-second samples of one operand expression (shared by every call over it)."""

    __slots__ = ("_held", "_last_index", "capacity", "operand", "samples")

    def __init__(self, operand: Evaluator, *, capacity: int) -> None:
        self.operand = operand
        self.capacity = capacity
        # (grid second, value); one more than the longest window, for rises().
        self.samples: deque[tuple[int, Value]] = deque(maxlen=capacity + 1)
        self._last_index: int | None = None
        self._held: Value = NO_DATA

    def resized(self, capacity: int) -> Sampler:
        """The same history, in a sampler that keeps ``capacity`` samples."""
        twin = Sampler(self.operand, capacity=capacity)
        twin.samples.extend(self.samples)
        twin._last_index = self._last_index
        twin._held = self._held
        return twin

    def observe(self, snapshot: SnapshotLike, *, now: float) -> None:
        self.record(self.operand(snapshot, {}), now=now)

    def record(self, value: Value, *, now: float) -> None:
        current = grid_index(now)
        if current == self._last_index:  # most ticks: no whole second crossed
            self._held = value
            return
        exact = on_grid(now)
        if self._last_index is None:
            if exact:
                self.samples.append((current, value))
        else:
            first = max(self._last_index + 1, current - self.capacity)
            for index in range(first, current + 1):
                held = value if (index == current and exact) else self._held
                self.samples.append((index, held))
        self._last_index = current
        self._held = value

    def window(self, function: str, window: float, *, now: float) -> Value:
        low = now - window + EPSILON
        high = now + EPSILON
        inside = [(g, v) for g, v in self.samples if low < g <= high]
        if not inside or inside[-1][1] is NO_DATA:
            return NO_DATA
        if function == "rises":
            return _rises(self.samples, low, high)
        values = [v for _, v in inside if v is not NO_DATA]
        if function == "count_over":
            return float(sum(1 for v in values if v))
        numbers = [float(v) for v in values]
        if function == "avg":
            return math.fsum(numbers) / len(numbers)
        if function == "max":
            return max(numbers)
        if function == "min":
            return min(numbers)
        if function == "delta":
            return numbers[-1] - numbers[0] if len(numbers) >= 2 else NO_DATA
        raise ValueError(f"not a windowed function: {function}")


def _rises(samples: deque[tuple[int, Value]], low: float, high: float) -> float:
    count = 0
    previous: tuple[int, Value] | None = None
    for g, v in samples:
        if (
            low < g <= high
            and previous is not None
            and previous[0] == g - 1
            and previous[1] is False
            and v is True
        ):
            count += 1
        previous = (g, v)
    return float(count)


class WindowValues(Mapping[Call, Value]):
    """This tick's windowed values, computed on first use and remembered for the tick.

    Keyed by the identity of the Call node (``routes`` maps ``id(call)`` to the sampler
    of its operand): hashing an expression tree on every lookup would cost more than
    the window itself. The engine builds the routes from the rules it holds, which keep
    those nodes alive.
    """

    __slots__ = ("_memo", "_now", "_routes")

    def __init__(self, routes: Mapping[int, Sampler], *, now: float) -> None:
        self._routes = routes
        self._now = now
        self._memo: dict[int, Value] = {}

    def __getitem__(self, call: Call) -> Value:
        key = id(call)
        value = self._memo.get(key)
        if value is None:
            sampler = self._routes.get(key)
            if sampler is None or call.window is None:
                value = NO_DATA
            else:
                value = sampler.window(call.function, call.window, now=self._now)
            self._memo[key] = value
        return value

    def __iter__(self) -> Iterator[Call]:
        return iter(())  # identity-keyed: not enumerable by node

    def __len__(self) -> int:
        return len(self._memo)


__all__ = ["EPSILON", "GRID", "NoData", "Sampler", "WindowValues", "grid_index", "on_grid"]
