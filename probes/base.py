"""Closed sets and the error base shared by every feltsafe package.

Theory of operation: probes, the rules engine and the monitor speak about the same two
participants and the same two media kinds; these enums are the closed sets that also
become Prometheus label values, so they must never grow with the number of sessions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

SessionId = NewType("SessionId", str)


class Role(StrEnum):
    """A participant of a therapy session, named by what they do, never who they are."""

    THERAPIST = "therapist"
    CLIENT = "client"

    @property
    def other(self) -> Role:
        return Role.CLIENT if self is Role.THERAPIST else Role.THERAPIST


class MediaKind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class FeltsafeError(Exception):
    """Base of every error feltsafe raises on purpose.

    Errors split as in h11: a caller misusing an API raises a subclass of this; bad data
    from a peer or a browser is *counted* by the probe that saw it and never raised.
    """


class ConfigError(FeltsafeError):
    """A configuration or rule file is wrong; raised at start-up, naming file and line."""
