"""The compact series notation helper expands as promtool's documentation says."""

from __future__ import annotations

import pytest

from tests.alerts.series import STALE, expand, ticks


@pytest.mark.parametrize(
    ("notation", "expected"),
    [
        ("-2+4x3", [-2, 2, 6, 10]),
        (" 1-2x4", [1, -1, -3, -5, -7]),
        (" 1x4", [1, 1, 1, 1, 1]),
        ("1 _x3 stale", [1, None, None, None, STALE]),
        ("0.1+0.1x2", [0.1, 0.2, 0.3]),
        ("_", [None]),
    ],
)
def test_expansion_matches_the_promtool_examples(notation: str, expected: list[object]) -> None:
    assert expand(notation) == expected


def test_a_step_without_a_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="count"):
        expand("1+2")


def test_missing_is_null_and_stale_is_absent_and_booleans_are_typed() -> None:
    result = ticks(
        {"client.video.frozen": "0 1 _ stale", "client.audio.loss_ratio": "0.5"},
        base={"session.marker": False},
    )
    assert [t for t, _ in result] == [0.0, 0.25, 0.5, 0.75]
    assert result[0][1] == {
        "session.marker": False,
        "client.video.frozen": False,
        "client.audio.loss_ratio": 0.5,
    }
    assert result[1][1]["client.video.frozen"] is True
    assert result[2][1]["client.video.frozen"] is None
    assert "client.video.frozen" not in result[3][1]
    assert "client.audio.loss_ratio" not in result[1][1]  # shorter series: stale after
