"""Identical-content freezes (probes/content_freeze.py) on seeded synthetic thumbnails."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from probes.base import ConfigError
from probes.content_freeze import (
    ContentFreezeConfig,
    ContentFreezeDetector,
    ContentFreezeEnded,
    ContentFreezeEvent,
    ContentFreezeStarted,
    ThumbnailError,
    thumbnail_from_y_plane,
)

FPS = 30.0
PERIOD = 1 / FPS
Frame = npt.NDArray[np.uint8]


def scene(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A textured 36 x 64 picture: smooth shading plus detail, mid-grey on average."""
    rows, cols = np.mgrid[0:36, 0:64]
    shading = 90 + 60 * np.sin(rows / 7.0) * np.cos(cols / 11.0)
    picture: npt.NDArray[np.float64] = shading + rng.uniform(-25, 25, (36, 64))
    return picture


def quantize(picture: npt.NDArray[np.floating]) -> Frame:
    frame: Frame = np.clip(np.floor(picture + 0.5), 0, 255).astype(np.uint8)
    return frame


def noisy(
    rng: np.random.Generator, base: npt.NDArray[np.float64], count: int, sigma: float
) -> Iterator[Frame]:
    """``count`` frames of a still scene with Gaussian sensor noise, generated in bulk."""
    chunk = 1000
    for first in range(0, count, chunk):
        n = min(chunk, count - first)
        noise = rng.standard_normal((n, *base.shape), dtype=np.float32) * sigma
        yield from quantize(base.astype(np.float32) + noise)


def reencoded(rng: np.random.Generator, stuck: Frame, count: int, ratio: float) -> Iterator[Frame]:
    """A stuck picture re-encoded: a fraction of pixels off by one grey level per frame."""
    for _ in range(count):
        flips = (rng.random(stuck.shape) < ratio) * rng.choice([-1, 1], stuck.shape)
        yield np.clip(stuck.astype(np.int16) + flips, 0, 255).astype(np.uint8)


def run(
    detector: ContentFreezeDetector, frames: Iterator[Frame], start: float = 0.0
) -> tuple[list[ContentFreezeEvent], float]:
    """Feed frames at 30 fps from ``start``; returns the events and the next frame time."""
    t = start
    for frame in frames:
        detector.on_thumbnail(frame, now=t)
        t += PERIOD
    return detector.drain_events(), t


def live_then_stuck(
    rng: np.random.Generator, stall_frames: int
) -> tuple[ContentFreezeDetector, list[ContentFreezeEvent], float]:
    """5 s of a live noisy scene, then its last frame repeated ``stall_frames`` times,
    then live again. Returns the stuck frame's arrival time."""
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, 150, sigma=2.0))
    events, t = run(detector, iter(live))
    stuck_at = t - PERIOD
    more, t = run(detector, iter([live[-1]] * stall_frames), t)
    after, t = run(detector, noisy(rng, base, 60, sigma=2.0), t)
    return detector, events + more + after, stuck_at


def test_an_identical_content_stall_of_1_5_s_is_found() -> None:
    detector, events, stuck_at = live_then_stuck(np.random.default_rng(1), stall_frames=45)
    started, ended = events
    assert isinstance(started, ContentFreezeStarted)
    assert isinstance(ended, ContentFreezeEnded)
    assert started.start == pytest.approx(stuck_at)
    assert stuck_at + 1.0 <= started.detected_at < stuck_at + 1.0 + PERIOD
    assert ended.duration == pytest.approx(1.5, abs=PERIOD + 1e-9)
    snapshot = detector.snapshot(now=ended.end)
    assert snapshot.freeze_count == 1
    assert snapshot.total_freezes_duration == pytest.approx(ended.duration)
    assert not snapshot.frozen


def test_an_identical_content_stall_of_0_5_s_is_not_a_freeze() -> None:
    detector, events, _ = live_then_stuck(np.random.default_rng(2), stall_frames=15)
    assert events == []
    assert detector.snapshot(now=10.0).freeze_count == 0


def test_ten_minutes_of_a_still_scene_with_sensor_noise_never_freezes() -> None:
    rng = np.random.default_rng(3)
    detector = ContentFreezeDetector()
    events, t = run(detector, noisy(rng, scene(rng), int(600 * FPS), sigma=2.0))
    snapshot = detector.snapshot(now=t)
    assert events == []
    assert snapshot.frame_count == 18_000
    assert snapshot.freeze_count == 0
    # The floor found the sensor noise: sigma 2 -> mean |difference| = 2 * 2 / sqrt(pi).
    assert snapshot.noise_floor == pytest.approx(4 / np.sqrt(np.pi), abs=0.1)
    assert snapshot.identical_tolerance == pytest.approx(0.1 * (snapshot.noise_floor or 0))


def test_a_stuck_frame_with_tiny_re_encode_noise_is_found() -> None:
    rng = np.random.default_rng(4)
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, 150, sigma=2.0))
    _, t = run(detector, iter(live))
    events, t = run(detector, reencoded(rng, live[-1], 60, ratio=0.05), t)
    events += run(detector, noisy(rng, base, 30, sigma=2.0), t)[0]
    assert [type(e) for e in events] == [ContentFreezeStarted, ContentFreezeEnded]
    ended = events[1]
    assert isinstance(ended, ContentFreezeEnded)
    assert ended.duration == pytest.approx(2.0, abs=PERIOD + 1e-9)


def test_on_a_clean_source_the_floor_keeps_a_still_scene_live_and_finds_a_stuck_one() -> None:
    # Sigma 0.3: consecutive frames differ by about 0.34 grey levels, under the absolute
    # cap of 0.5; only the tracked floor keeps this still scene from looking frozen, and
    # a stuck picture with re-encode noise of d ~ 0.02 (VP8 gives about 0.005) is found.
    rng = np.random.default_rng(5)
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, int(120 * FPS), sigma=0.3))
    events, t = run(detector, iter(live))
    snapshot = detector.snapshot(now=t)
    assert events == []
    assert snapshot.noise_floor == pytest.approx(0.34, abs=0.03)
    assert snapshot.identical_tolerance == pytest.approx(0.034, abs=0.004)

    stuck, t = run(detector, reencoded(rng, live[-1], 45, ratio=0.01), t)
    assert [type(e) for e in stuck] == [ContentFreezeStarted]


def test_a_small_moving_patch_in_an_unchanged_picture_is_not_a_freeze() -> None:
    # 9 pixels of 2,304 changing by 30: a mean difference of 0.12, under the tolerance,
    # but it is somebody moving (a blink, a hand), not a stuck camera.
    rng = np.random.default_rng(6)
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, 150, sigma=2.0))
    _, t = run(detector, iter(live))

    def blinking() -> Iterator[Frame]:
        for i in range(90):
            frame = live[-1].copy()
            frame[10:13, 20:23] = 100 if i % 2 else 130
            yield frame

    events, _ = run(detector, blinking(), t)
    assert events == []


def test_before_the_floor_is_known_only_bit_identical_frames_count() -> None:
    rng = np.random.default_rng(7)
    first = quantize(scene(rng))
    nearly = ContentFreezeDetector()
    events, _ = run(nearly, reencoded(rng, first, 90, ratio=0.05))
    # With no live picture to compare with, the re-encode noise *is* this source's floor:
    # the probe stays silent rather than guess.
    assert events == []
    assert nearly.snapshot(now=3.0).noise_floor == pytest.approx(0.1, abs=0.02)

    exact = ContentFreezeDetector()
    events, _ = run(exact, iter([first] * 45))
    assert [type(e) for e in events] == [ContentFreezeStarted]


def test_a_long_stall_stays_one_freeze_and_does_not_lower_the_floor() -> None:
    rng = np.random.default_rng(8)
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, 150, sigma=2.0))
    _, t = run(detector, iter(live))
    floor = detector.snapshot(now=t).noise_floor
    events, t = run(detector, reencoded(rng, live[-1], int(60 * FPS), ratio=0.05), t)
    snapshot = detector.snapshot(now=t)
    assert [type(e) for e in events] == [ContentFreezeStarted]
    assert snapshot.frozen
    assert snapshot.current_freeze_duration == pytest.approx(60.0, abs=0.1)
    assert snapshot.noise_floor == floor
    assert snapshot.freezes_recent_count == 1


def test_a_resolution_change_is_counted_and_ends_a_run() -> None:
    rng = np.random.default_rng(9)
    first = quantize(scene(rng))
    detector = ContentFreezeDetector()
    events, t = run(detector, iter([first] * 40))
    assert [type(e) for e in events] == [ContentFreezeStarted]
    detector.on_thumbnail(np.zeros((18, 32), np.uint8), now=t)
    assert [type(e) for e in detector.drain_events()] == [ContentFreezeEnded]
    assert detector.snapshot(now=t).shape_change_count == 1


def test_time_going_backwards_is_counted_and_the_frame_ignored() -> None:
    rng = np.random.default_rng(10)
    detector = ContentFreezeDetector()
    _, t = run(detector, noisy(rng, scene(rng), 10, sigma=2.0))
    detector.on_thumbnail(np.zeros((36, 64), np.uint8), now=t - 1.0)
    snapshot = detector.snapshot(now=t)
    assert snapshot.non_monotonic_count == 1
    assert snapshot.frame_count == 10


def test_a_thumbnail_that_is_not_a_grey_image_is_a_caller_error() -> None:
    detector = ContentFreezeDetector()
    with pytest.raises(ThumbnailError):
        detector.on_thumbnail(np.zeros((36, 64, 3), np.uint8), now=0.0)
    with pytest.raises(ThumbnailError):
        detector.on_thumbnail(np.zeros((36, 64), np.float32), now=0.0)


def test_only_the_previous_thumbnail_is_kept() -> None:
    rng = np.random.default_rng(11)
    detector = ContentFreezeDetector()
    frames = list(noisy(rng, scene(rng), 50, sigma=2.0))
    run(detector, iter(frames))
    kept = [
        value
        for name in ContentFreezeDetector.__slots__
        if isinstance(value := getattr(detector, name), np.ndarray)
    ]
    pictures = [a for a in kept if a.ndim == 2]
    assert len(pictures) == 1
    assert np.array_equal(pictures[0], frames[-1])
    assert all(a.ndim == 1 and a.dtype == np.float64 for a in kept if a.ndim != 2)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((360, 640), (36, 64)),
        ((720, 1280), (36, 64)),
        ((1080, 1920), (36, 64)),
        ((480, 640), (35, 64)),
        ((240, 320), (35, 64)),
        ((36, 64), (36, 64)),
        ((10, 10), (10, 10)),
    ],
)
def test_a_y_plane_is_subsampled_by_striding_to_at_most_64_by_36(
    shape: tuple[int, int], expected: tuple[int, int]
) -> None:
    y = np.arange(shape[0] * shape[1], dtype=np.uint32).reshape(shape).astype(np.uint8)
    thumbnail = thumbnail_from_y_plane(y)
    assert thumbnail.shape == expected
    assert np.shares_memory(thumbnail, y)  # a view: no copy of the picture
    step_y, step_x = -(-shape[0] // 36), -(-shape[1] // 64)
    assert np.array_equal(thumbnail, y[::step_y, ::step_x])


def test_recent_content_freezes_fall_out_after_two_minutes() -> None:
    rng = np.random.default_rng(12)
    base = scene(rng)
    detector = ContentFreezeDetector()
    live = list(noisy(rng, base, 150, sigma=2.0))
    _, t = run(detector, iter(live))
    _, t = run(detector, iter([live[-1]] * 45), t)
    _, t = run(detector, noisy(rng, base, 60, sigma=2.0), t)
    assert detector.snapshot(now=t).freezes_recent_count == 1
    assert detector.snapshot(now=t + 125.0).freezes_recent_count == 0
    assert detector.snapshot(now=t + 125.0).freeze_count == 1


def test_config_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError):
        ContentFreezeConfig(floor_ratio=1.5)
    with pytest.raises(ConfigError):
        ContentFreezeConfig(min_floor_samples=0)
