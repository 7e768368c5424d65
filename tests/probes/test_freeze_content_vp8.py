"""Identical-content freezes on pictures that went through a real VP8 encoder and decoder.

aiortc's own ``Vp8Encoder`` (libvpx, realtime, temporal denoiser on, as a browser's) and
``Vp8Decoder``: the decoded Y plane is what the monitor's full mode hands the probe. The
denoiser removes most sensor noise, so these cases check the rule where it is tight.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from probes.content_freeze import (
    ContentFreezeDetector,
    ContentFreezeEvent,
    ContentFreezeStarted,
    thumbnail_from_y_plane,
)

av = pytest.importorskip("av")
vpx = pytest.importorskip("aiortc.codecs.vpx")
jitterbuffer = pytest.importorskip("aiortc.jitterbuffer")

pytestmark = pytest.mark.slow

WIDTH, HEIGHT, FPS = 320, 180, 30
Picture = npt.NDArray[np.uint8]


class Scene:
    """A textured background and a soft-edged 'face' swaying by ``amplitude`` pixels."""

    def __init__(self, seed: int, amplitude: float, sigma: float = 2.0) -> None:
        self.rng = np.random.default_rng(seed)
        rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
        self.rows, self.cols = rows, cols
        self.background = (
            90
            + 50 * np.sin(rows / 13.0) * np.cos(cols / 17.0)
            + self.rng.uniform(-20, 20, (HEIGHT, WIDTH))
        )
        self.amplitude, self.sigma = amplitude, sigma

    def picture(self, pose: int) -> Picture:
        """The scene at ``pose`` (frame index of the movement) with fresh sensor noise."""
        phase = pose / FPS * 2 * np.pi
        cy = 95 + 0.5 * self.amplitude * np.sin(0.7 * phase)
        cx = 160 + self.amplitude * np.sin(0.5 * phase)
        radius = np.sqrt(((self.rows - cy) / 55) ** 2 + ((self.cols - cx) / 40) ** 2)
        face = np.clip((1 - radius) * 8, 0, 1)
        luma = self.background * (1 - face) + (170 + 15 * np.sin(self.cols / 5.0 + pose / 7)) * face
        noisy = luma + self.sigma * self.rng.standard_normal(luma.shape, dtype=np.float32)
        picture: Picture = np.clip(np.floor(noisy + 0.5), 0, 255).astype(np.uint8)
        return picture


def through_vp8(pictures: list[Picture], bitrate: int) -> Iterator[tuple[int, Picture]]:
    encoder, decoder = vpx.Vp8Encoder(), vpx.Vp8Decoder()
    encoder.target_bitrate = bitrate
    chroma = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
    for index, luma in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")
        frame.pts, frame.time_base = index * 3000, fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vpx.vp8_depayload(p) for p in payloads)
        for decoded in decoder.decode(jitterbuffer.JitterFrame(data=data, timestamp=timestamp)):
            yield index, decoded.to_ndarray(format="yuv420p")[:HEIGHT]


def detect(pictures: list[Picture], bitrate: int) -> list[ContentFreezeEvent]:
    detector = ContentFreezeDetector()
    events: list[ContentFreezeEvent] = []
    for index, luma in through_vp8(pictures, bitrate):
        detector.on_thumbnail(thumbnail_from_y_plane(luma), now=index / FPS)
        events += detector.drain_events()
    return events


@pytest.mark.parametrize(("bitrate", "amplitude"), [(250_000, 20.0), (1_000_000, 5.0)])
def test_a_stuck_source_after_motion_is_found_through_vp8(bitrate: int, amplitude: float) -> None:
    scene = Scene(seed=5, amplitude=amplitude)
    stuck = scene.picture(90)
    pictures = [scene.picture(i) for i in range(90)] + [stuck] * 75  # 3 s live, 2.5 s stuck
    started = [e for e in detect(pictures, bitrate) if isinstance(e, ContentFreezeStarted)]
    assert len(started) == 1
    stall_began = 90 / FPS
    # The encoder refines the stuck picture for a while (up to ~0.8 s at 250 kbps after
    # large motion) before its output settles into near-identical frames.
    assert stall_began - 1 / FPS <= started[0].start <= stall_began + 1.0
    assert started[0].detected_at <= stall_began + 2.0


@pytest.mark.parametrize(("bitrate", "amplitude"), [(250_000, 5.0), (1_000_000, 20.0)])
def test_a_scene_that_stops_moving_but_keeps_sensor_noise_is_not_frozen_through_vp8(
    bitrate: int, amplitude: float
) -> None:
    scene = Scene(seed=6, amplitude=amplitude, sigma=2.0)
    pictures = [scene.picture(i) for i in range(90)] + [scene.picture(90) for _ in range(150)]
    assert detect(pictures, bitrate) == []


def test_a_moving_scene_is_never_frozen_through_vp8() -> None:
    scene = Scene(seed=7, amplitude=5.0, sigma=1.0)
    assert detect([scene.picture(i) for i in range(150)], 500_000) == []
