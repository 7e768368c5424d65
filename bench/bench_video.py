"""Video freeze probe costs: per frame, per packet and per thumbnail.

- timing: ``FreezeDetector.on_frame`` plus a ``next_deadline`` per frame (what a session
  does to re-arm its timer), on a 30 fps stream with a freeze every 10 s;
- rtp: ``RtpFrameTracker.on_packet`` feeding the same detector, 4 packets a frame;
- content: ``ContentFreezeDetector.on_thumbnail`` on 64 x 36 noisy thumbnails;
- thumbnail: ``thumbnail_from_y_plane`` on a 640 x 360 Y plane (a view, no copy).

Each is timed in CPU time of this process, best of several repeats (filters out the other
tenants of a shared machine). For scale: one 30 fps stream is 30 frames a second, so
10 us a frame is 0.03 % of a core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from probes.content_freeze import ContentFreezeDetector, thumbnail_from_y_plane
from probes.freeze import FreezeDetector
from probes.rtp_frames import RtpFrameTracker


def _best(work: Callable[[], int], repeats: int) -> float:
    """Best CPU seconds per item over ``repeats`` runs of ``work`` (returns item count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        items = work()
        best = min(best, (time.process_time() - start) / items)
    return best


def _arrivals(frames: int) -> list[float]:
    times, t = [], 0.0
    for i in range(frames):
        times.append(t)
        t += 0.5 if i % 300 == 299 else 1 / 30
    return times


def run(*, quick: bool = False) -> list[str]:
    frames = 3_000 if quick else 30_000
    repeats = 2 if quick else 5
    arrivals = _arrivals(frames)

    def timing() -> int:
        detector = FreezeDetector()
        for t in arrivals:
            detector.on_frame(now=t)
            detector.next_deadline()
        return frames

    def rtp() -> int:
        detector = FreezeDetector()
        tracker = RtpFrameTracker(detector)
        for i, t in enumerate(arrivals):
            for k in range(4):
                tracker.on_packet(rtp_timestamp=i * 3000, marker=k == 3, now=t + k * 1e-4)
            detector.next_deadline()
        return frames * 4

    rng = np.random.default_rng(1)
    base = rng.uniform(40, 200, (36, 64))
    count = 1_000 if quick else 5_000
    noise = rng.normal(0, 2, (count, 36, 64))
    thumbnails = np.clip(base + noise, 0, 255).astype(np.uint8)

    def content() -> int:
        detector = ContentFreezeDetector()
        for i in range(count):
            detector.on_thumbnail(thumbnails[i], now=i / 30)
        return count

    plane = rng.integers(0, 256, (360, 640), dtype=np.uint8)

    def thumbnail() -> int:
        for _ in range(count):
            thumbnail_from_y_plane(plane)
        return count

    rows = [
        ("timing, per frame (on_frame + next_deadline)", _best(timing, repeats)),
        ("rtp framing + timing, per packet", _best(rtp, repeats)),
        ("content, per 64x36 thumbnail", _best(content, repeats)),
        ("thumbnail_from_y_plane, 640x360", _best(thumbnail, repeats)),
    ]
    lines = ["| work | us per item | items/s per core |", "|---|---:|---:|"]
    lines += [f"| {name} | {cost * 1e6:.2f} | {1 / cost:,.0f} |" for name, cost in rows]
    return lines
