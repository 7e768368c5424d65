"""Speech and conversation through the session core, from each source (now by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import Mode
from monitor.observations import MediaSpec, level_db_from_energy
from monitor.participant import Attachment
from monitor.session import Session
from probes.base import MediaKind, Role
from probes.rtp import RtpHeader
from probes.speech import VoiceStarted, VoiceStopped
from tests.monitor.peers import ScriptedSpeechTrack

AUDIO = MediaSpec(MediaKind.AUDIO, {111: 48000}, {}, {}, {111: "opus"})
SCRIPT = {Role.THERAPIST: [(2.0, 6.0)], Role.CLIENT: [(7.0, 10.0)]}


def level_at(role: Role, t: float) -> int:
    """RFC 6464 -dBov: 150 ms syllables at -20 dBov, 100 ms dips to -50, -75 (+-2) room.

    Real speech dips by 15-40 dB between syllables; a level that stays within 8 dB for
    1.5 s is steady noise to the floor tracker (probes/speech.py), not speech.
    """
    if any(a <= t < b for a, b in SCRIPT[role]):
        return 20 if (t * 4.0) % 1.0 < 0.6 else 50
    return 75 + int(t * 50) % 3


def drive(session: Session, until: float) -> list[tuple[float, dict[str, object]]]:
    ticks = []
    while (deadline := session.next_deadline()) is not None and deadline <= until:
        snapshot = session.on_timer(now=deadline)
        if snapshot is not None:
            ticks.append((deadline, snapshot))
    return ticks


def voice_edges(session: Session) -> dict[Role, list[tuple[str, float]]]:
    edges: dict[Role, list[tuple[str, float]]] = {role: [] for role in Role}
    for event in session.drain_events():
        if isinstance(event.event, VoiceStarted | VoiceStopped) and event.role is not None:
            edges[event.role].append((type(event.event).__name__, event.event.t))
    return edges


def assert_edges_follow_the_script(edges: dict[Role, list[tuple[str, float]]]) -> None:
    for role, talk in SCRIPT.items():
        expected = [("VoiceStarted", a) for a, _ in talk] + [("VoiceStopped", b) for _, b in talk]
        got = sorted(edges[role], key=lambda e: e[1])
        assert [name for name, _ in got] == [
            name for name, _ in sorted(expected, key=lambda e: e[1])
        ]
        for (_, t), (_, want) in zip(got, sorted(expected, key=lambda e: e[1]), strict=True):
            assert t == pytest.approx(want, abs=0.1)


@pytest.mark.parametrize("arrival_jitter", [0.0, 0.03])
def test_rfc6464_levels_give_talk_that_follows_the_script(arrival_jitter: float) -> None:
    rng = np.random.default_rng(5)
    session = Session("s", mode=Mode.METADATA, now=0.0)
    for role in Role:
        session.attach(role, Attachment.WHIP, now=0.0)
        session.configure_media(role, AUDIO)
    packets = []
    for role in Role:
        for i in range(600):  # 12 s, 20 ms packets; placed by timestamp, not arrival
            t = i * 0.02
            arrival = t + 0.02 + arrival_jitter * rng.random()
            header = RtpHeader(7, i, 1000 + 960 * i, 111, False, 100, level_at(role, t))
            packets.append((arrival, role, header))
    ticks = []
    for arrival, role, header in sorted(packets, key=lambda p: p[0]):
        ticks += drive(session, until=arrival)
        session.on_rtp(role, MediaKind.AUDIO, header, now=arrival)
    ticks += drive(session, until=13.0)
    assert_edges_follow_the_script(voice_edges(session))
    final = ticks[-1][1]
    assert final["conversation.therapist.talk_time_s"] == pytest.approx(4.0, abs=0.15)
    assert final["conversation.client.talk_time_s"] == pytest.approx(3.0, abs=0.15)
    assert final["conversation.turns_total"] == 2
    # Live, speech.active follows the script within the smoother's decision delay.
    for t, snapshot in ticks:
        talking = any(a + 0.4 <= t < b for a, b in SCRIPT[Role.THERAPIST])
        silent = all(not (a - 0.1 <= t < b + 0.5) for a, b in SCRIPT[Role.THERAPIST])
        if talking:
            assert snapshot["therapist.speech.active"] is True, t
        elif silent and t > 2.0:
            assert snapshot["therapist.speech.active"] is False, t


def test_beacon_microphone_levels_alone_give_talk_activity() -> None:
    session = Session("s", mode=Mode.FULL, now=0.0)
    for role in Role:
        session.attach(role, Attachment.BEACON, now=0.0)
    for i in range(1, 121):  # ten a second, as the beacon sends them
        t = i * 0.1
        for role in Role:
            energy = 10 ** (-level_at(role, t - 0.05) / 10) * 0.1
            session.on_audio_level(role, level_db_from_energy(energy, 0.1), now=t, duration=0.1)
        drive(session, until=t)
    drive(session, until=13.0)
    assert_edges_follow_the_script(voice_edges(session))


def test_decoded_pcm_gives_talk_that_follows_the_script() -> None:
    session = Session("s", mode=Mode.FULL, now=0.0)
    tracks = {
        Role.THERAPIST: ScriptedSpeechTrack(SCRIPT[Role.THERAPIST], f0=110, seed=3),
        Role.CLIENT: ScriptedSpeechTrack(SCRIPT[Role.CLIENT], f0=220, seed=4),
    }
    for role in Role:
        session.attach(role, Attachment.WHIP, now=0.0)
    for i in range(600):
        t = i * 0.02
        for role, track in tracks.items():
            pcm = np.clip(track._chunk(t, 960), -32768, 32767).astype(np.int16)
            session.on_audio_frame(role, pcm, 48000, now=t)
        drive(session, until=t + 0.02)
    ticks = drive(session, until=13.0)
    assert_edges_follow_the_script(voice_edges(session))
    assert ticks[-1][1]["therapist.speech.level_db"] < -40  # silence at the end


def test_energy_to_level_follows_w3c_audio_level() -> None:
    # audioLevel 0.1 held for 1 s: energy 0.01, level 20 log10(0.1) = -20 dBov
    assert level_db_from_energy(0.01, 1.0) == pytest.approx(-20.0)
    assert level_db_from_energy(0.0, 1.0) == -127.0
    assert level_db_from_energy(1.0, 0.0) == -127.0
