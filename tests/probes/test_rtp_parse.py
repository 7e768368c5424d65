"""Parsing raw RTP headers for metadata mode: fields, RFC 6464 level, junk."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.rtp import RtpHeader, parse_rtp_header


def rtp_bytes(
    *,
    seq: int = 1000,
    timestamp: int = 123456,
    ssrc: int = 0xCAFE,
    payload_type: int = 111,
    marker: bool = False,
    csrcs: int = 0,
    extension: bytes | None = None,
    profile: int = 0xBEDE,
    payload: bytes = b"\x01" * 40,
    padding: int = 0,
) -> bytes:
    """An RTP packet laid out by hand from RFC 3550 section 5.1."""
    first = 0x80 | csrcs | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    second = (0x80 if marker else 0) | payload_type
    data = struct.pack("!BBHII", first, second, seq, timestamp, ssrc)
    data += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if extension is not None:
        extension += bytes(-len(extension) % 4)
        data += struct.pack("!HH", profile, len(extension) // 4) + extension
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


def one_byte_element(ext_id: int, value: bytes) -> bytes:
    return bytes([ext_id << 4 | (len(value) - 1)]) + value


def test_fixed_header_fields_are_read() -> None:
    data = rtp_bytes(seq=65535, timestamp=2**32 - 1, ssrc=2**32 - 1, payload_type=96, marker=True)
    assert parse_rtp_header(data) == RtpHeader(2**32 - 1, 65535, 2**32 - 1, 96, True, len(data))


def test_the_audio_level_is_found_among_one_byte_extensions() -> None:
    extension = (
        one_byte_element(3, b"\x00\x07")  # transport-wide sequence number
        + b"\x00"  # padding between elements
        + one_byte_element(1, bytes([0x80 | 42]))  # V bit set, level 42
    )
    data = rtp_bytes(extension=extension, csrcs=2)
    header = parse_rtp_header(data, audio_level_ext_id=1)
    assert header is not None
    assert header.audio_level_dbov == 42
    assert header.size_bytes == len(data)
    assert parse_rtp_header(data, audio_level_ext_id=5) == RtpHeader(
        0xCAFE, 1000, 123456, 111, False, len(data), None
    )
    assert parse_rtp_header(data) == parse_rtp_header(data, audio_level_ext_id=5)


def test_the_audio_level_is_found_among_two_byte_extensions() -> None:
    extension = bytes([7, 2, 0xAA, 0xBB, 1, 1, 99])
    header = parse_rtp_header(rtp_bytes(extension=extension, profile=0x1000), audio_level_ext_id=1)
    assert header is not None
    assert header.audio_level_dbov == 99


def test_padding_is_accepted_and_counted_in_the_size() -> None:
    data = rtp_bytes(padding=4)
    header = parse_rtp_header(data)
    assert header is not None
    assert header.size_bytes == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x6f\x00",
        bytes([0x40]) + rtp_bytes()[1:],  # version 1
        rtp_bytes(payload_type=72, marker=True),  # RTCP sender report, RFC 5761 demux
        rtp_bytes(csrcs=3)[:20],  # CSRC list cut short
        rtp_bytes(extension=b"\x10\x01")[:14],  # extension header cut short
        rtp_bytes(extension=b"\x10\x01", payload=b"")[:-2],  # extension longer than packet
        rtp_bytes(padding=1, payload=b"")[:-1] + b"\x00",  # padding count 0
        rtp_bytes(padding=4, payload=b"")[:12] + b"\x00\x00\x00\x50",  # padding > packet
    ],
)
def test_anything_that_is_not_an_rtp_packet_gives_none(data: bytes) -> None:
    assert parse_rtp_header(data, audio_level_ext_id=1) is None


def test_a_malformed_extension_block_gives_none_when_the_level_is_wanted() -> None:
    data = rtp_bytes(extension=b"\x1f\x01\x02\x03")  # element claims 16 bytes in a 4-byte block
    assert parse_rtp_header(data, audio_level_ext_id=1) is None


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80), ext_id=st.sampled_from([None, 1, 3]))
def test_random_bytes_never_raise(data: bytes, ext_id: int | None) -> None:
    header = parse_rtp_header(data, audio_level_ext_id=ext_id)
    assert header is None or (header.size_bytes == len(data) and 0 <= header.payload_type < 128)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    payload_type=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    marker=st.booleans(),
    csrcs=st.integers(0, 15),
    level=st.integers(0, 127),
)
def test_headers_round_trip(
    seq: int, timestamp: int, ssrc: int, payload_type: int, marker: bool, csrcs: int, level: int
) -> None:
    data = rtp_bytes(
        seq=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_type=payload_type,
        marker=marker,
        csrcs=csrcs,
        extension=one_byte_element(1, bytes([level])),
    )
    assert parse_rtp_header(data, audio_level_ext_id=1) == RtpHeader(
        ssrc, seq, timestamp, payload_type, marker, len(data), level
    )
