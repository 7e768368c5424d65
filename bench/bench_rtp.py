"""RTP probe throughput, and its cost relative to parsing the same headers.

The floor is :func:`probes.rtp.parse_rtp_header` over a pre-built list of raw packets
(struct unpack of the 12-byte header, the RFC 8285 one-byte extension walked to the
RFC 6464 level, an ``RtpHeader`` built): the least the monitor must do per packet in
metadata mode. The probe run is the same parse followed by ``RtpReceiveStats.on_packet``.
Both loops run side by side, alternating, on the same packets; each is timed in CPU
time of this process (the cost on one core) and the best of several repeats is kept,
which filters out most of the other tenants of a shared machine.
Target (issue 2): (parse + probe) / parse <= 2.

The last column compares with a bare ``struct.unpack_from`` of the fixed header only
(no extension, no object), and the last line times building the ``RtpHeader`` alone, to
show how much of the floor is object creation.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

from probes.rtp import RtpHeader, RtpReceiveStats, parse_rtp_header

AUDIO_PT, VIDEO_PT, RTX_PT = 111, 96, 97
AUDIO_LEVEL_ID, TRANSPORT_CC_ID, ABS_SEND_TIME_ID = 1, 3, 2
_FIXED = struct.Struct("!BBHII")


def _rtp(*, pt: int, seq: int, ts: int, ssrc: int, marker: bool, ext: bytes, payload: int) -> bytes:
    first = 0x80 | (0x10 if ext else 0)
    header = _FIXED.pack(first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    if ext:
        ext += bytes(-len(ext) % 4)
        header += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    return header + bytes(payload)


def _audio_trace(count: int, rng: random.Random) -> list[tuple[bytes, float]]:
    """Opus 20 ms packets as Chrome sends them (level + transport-cc), 2 % loss, jitter."""
    packets = []
    for i in range(count):
        if rng.random() < 0.02:
            continue
        ext = bytes([AUDIO_LEVEL_ID << 4, 0x80 | rng.randrange(20, 90)])
        ext += bytes([TRANSPORT_CC_ID << 4 | 1]) + struct.pack("!H", i & 0xFFFF)
        data = _rtp(
            pt=AUDIO_PT,
            seq=60000 + i,
            ts=i * 960,
            ssrc=0x1234,
            marker=False,
            ext=ext,
            payload=rng.randrange(60, 120),
        )
        packets.append((data, i * 0.02 + rng.uniform(0.0, 0.01)))
    packets.sort(key=lambda p: p[1])
    return packets


def _video_trace(
    count: int, rng: random.Random, *, packet_jitter: float
) -> list[tuple[bytes, float]]:
    """VP8 at 30 fps, 4 packets a frame, 1 % loss, each lost packet resent over RTX.

    A frame's packets leave 0.5 ms apart and share the frame's network delay (0-4 ms of
    jitter); ``packet_jitter`` adds independent delay per packet. At 0.55 ms a few
    packets in a thousand arrive out of order, as on real paths; at 4 ms a third do
    (a stress case for the reordering paths).
    """
    packets = []
    rtx_seq = 0
    frame_delay = 0.0
    for i in range(count):
        frame, part = divmod(i, 4)
        if part == 0:
            frame_delay = rng.uniform(0.0, 0.004)
        arrival = frame / 30 + frame_delay + part * 0.0005 + rng.uniform(0.0, packet_jitter)
        ext = bytes([TRANSPORT_CC_ID << 4 | 1]) + struct.pack("!H", i & 0xFFFF)
        ext += bytes([ABS_SEND_TIME_ID << 4 | 2]) + bytes(3)
        lost = rng.random() < 0.01
        data = _rtp(
            pt=RTX_PT if lost else VIDEO_PT,
            seq=rtx_seq if lost else i,
            ts=frame * 3000,
            ssrc=0x5678 if lost else 0x9ABC,
            marker=part == 3 and not lost,
            ext=ext,
            payload=1100,
        )
        if lost:  # the original never arrives; its retransmission comes an RTT later
            rtx_seq += 1
            arrival += 0.05
        packets.append((data, arrival))
    packets.sort(key=lambda p: p[1])
    return packets


def _time(loop: Callable[[], None]) -> float:
    """CPU seconds of this process: the cost on one core, whatever else runs."""
    start = time.process_time()
    loop()
    return time.process_time() - start


def _measure(packets: list[tuple[bytes, float]], repeats: int) -> tuple[float, float, float]:
    """Best seconds for: bare fixed-header unpack, parse, parse + probe."""
    unpack = _FIXED.unpack_from

    def bare() -> None:
        for data, _now in packets:
            unpack(data)

    def parse() -> None:
        for data, _now in packets:
            parse_rtp_header(data, audio_level_ext_id=AUDIO_LEVEL_ID)

    def probe() -> None:
        stats = RtpReceiveStats(
            clock_rates={AUDIO_PT: 48000, VIDEO_PT: 90000}, rtx_payload_types={RTX_PT: VIDEO_PT}
        )
        on_packet = stats.on_packet
        for data, now in packets:
            header = parse_rtp_header(data, audio_level_ext_id=AUDIO_LEVEL_ID)
            if header is not None:
                on_packet(header, now=now)

    best = [float("inf")] * 3
    for _ in range(repeats):
        for index, loop in enumerate((bare, parse, probe)):
            best[index] = min(best[index], _time(loop))
    return best[0], best[1], best[2]


def _check(packets: list[tuple[bytes, float]]) -> RtpHeader | None:
    return parse_rtp_header(packets[0][0], audio_level_ext_id=AUDIO_LEVEL_ID)


def run(quick: bool) -> list[str]:
    count = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    rng = random.Random(6464)
    lines = [
        f"{count} packets a trace, best of {repeats} runs, CPU time on one core.",
        "",
        "| trace | parse us/pkt | probe us/pkt | parse+probe pkt/s | (parse+probe)/parse "
        "| vs bare unpack |",
        "|---|---|---|---|---|---|",
    ]
    for name, packets in (
        ("audio, Opus 50 pkt/s", _audio_trace(count, rng)),
        ("video, VP8 + RTX", _video_trace(count, rng, packet_jitter=0.00055)),
        ("video, 1/3 reordered (stress)", _video_trace(count, rng, packet_jitter=0.004)),
    ):
        assert _check(packets) is not None, "the benchmark's packets must parse"
        bare, parse, probe = _measure(packets, repeats)
        n = len(packets)
        lines.append(
            f"| {name} | {parse / n * 1e6:.2f} | {(probe - parse) / n * 1e6:.2f} "
            f"| {n / probe:,.0f} | {probe / parse:.2f} | {probe / bare:.1f} |"
        )
    construct = min(_time(lambda: _construct(count)) for _ in range(repeats))
    lines += [
        "",
        "target: (parse+probe)/parse <= 2.00",
        f"of the parse, building the frozen RtpHeader alone costs {construct / count * 1e6:.2f} us",
    ]
    return lines


def _construct(count: int) -> None:
    for i in range(count):
        RtpHeader(0x1234, i & 0xFFFF, i, AUDIO_PT, False, 120, 40)
