"""The dashboards feltsafe ships: a fleet overview and the monitor's own health.

Panels say what an operator decides from them; quality thresholds drawn on them are the
ones in DESIGN.md's table (MOS 3.1/3.6, loss 2.5/7.5 %, jitter 30 ms, RTT 300/500 ms).
"""

from __future__ import annotations

from dashboards.model import (
    Dashboard,
    Panel,
    PanelType,
    Query,
    buckets,
    gauge,
    increase,
    quantile,
    rate,
    share_below,
)
from monitor.metrics import BY_NAME

M = BY_NAME

FLEET = Dashboard(
    uid="feltsafe-fleet",
    title="feltsafe / Fleet overview",
    description="Session quality across the fleet: how many sessions, how good, what fired.",
    panels=(
        Panel(
            "Live sessions",
            PanelType.STAT,
            (Query(gauge(M["feltsafe_sessions_active"], by=("mode",)), "{{mode}}"),),
            width=6,
            height=5,
        ),
        Panel(
            "Participants connected",
            PanelType.STAT,
            (Query(gauge(M["feltsafe_participants_connected"], by=("role",)), "{{role}}"),),
            width=6,
            height=5,
        ),
        Panel(
            "Share of audio-seconds with poor MOS (< 3.6)",
            PanelType.STAT,
            (Query(share_below(M["feltsafe_audio_mos"], 3.6, "15m"), "poor MOS"),),
            unit="percentunit",
            width=6,
            height=5,
        ),
        Panel(
            "Freezes per session-hour",
            PanelType.STAT,
            (
                Query(
                    f"60 * {increase(M['feltsafe_video_freezes'], '1h')}"
                    f" / clamp_min({increase(M['feltsafe_session_minutes'], '1h')}, 1)",
                    "freezes / session-hour",
                ),
            ),
            width=6,
            height=5,
        ),
        Panel(
            "Audio MOS across streams (p10, p50)",
            PanelType.TIMESERIES,
            (
                Query(quantile(0.1, M["feltsafe_audio_mos"], by=("role",)), "p10 {{role}}"),
                Query(quantile(0.5, M["feltsafe_audio_mos"], by=("role",)), "p50 {{role}}"),
            ),
            description="Below 3.6 is poor, below 3.1 bad (ITU-T G.107 bands).",
        ),
        Panel(
            "Packet loss across streams (p90)",
            PanelType.TIMESERIES,
            (
                Query(
                    quantile(0.9, M["feltsafe_stream_loss_ratio"], by=("role", "kind")),
                    "p90 {{role}} {{kind}}",
                ),
            ),
            unit="percentunit",
            description="Audio loss above 2.5 % is audible, above 7.5 % bad (LiveKit).",
        ),
        Panel(
            "Jitter across streams (p90)",
            PanelType.TIMESERIES,
            (
                Query(
                    quantile(0.9, M["feltsafe_stream_jitter_seconds"], by=("role", "kind")),
                    "p90 {{role}} {{kind}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Round-trip time (p90)",
            PanelType.TIMESERIES,
            (Query(quantile(0.9, M["feltsafe_path_rtt_seconds"], by=("role",)), "p90 {{role}}"),),
            unit="s",
        ),
        Panel(
            "Flags raised, by rule",
            PanelType.BARGAUGE,
            (Query(increase(M["feltsafe_flags"], "$__range", by=("rule",)), "{{rule}}"),),
            options={"reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        Panel(
            "Flags per second, by severity",
            PanelType.TIMESERIES,
            (Query(rate(M["feltsafe_flags"], by=("severity",)), "{{severity}}"),),
        ),
        Panel(
            "Worst hours: MOS distribution per hour",
            PanelType.HEATMAP,
            (Query(buckets(M["feltsafe_audio_mos"], "1h"), "{{le}}", "heatmap"),),
            width=24,
            description="Each column is an hour; dark cells low on the axis are bad hours.",
        ),
        Panel(
            "Therapist talk share per session-minute (p50, p90)",
            PanelType.TIMESERIES,
            (
                Query(
                    quantile(0.5, M["feltsafe_talk_share_ratio"], "15m", by=("role",)),
                    "p50 {{role}}",
                ),
                Query(
                    quantile(0.9, M["feltsafe_talk_share_ratio"], "15m", by=("role",)),
                    "p90 {{role}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Interruptions per session-minute (p90)",
            PanelType.TIMESERIES,
            (
                Query(
                    quantile(0.9, M["feltsafe_interruptions_per_minute"], "15m", by=("role",)),
                    "p90 by {{role}}",
                ),
            ),
        ),
    ),
)

HEALTH = Dashboard(
    uid="feltsafe-health",
    title="feltsafe / Service health",
    description="Is the monitor itself keeping up: tick lag, bad input, clients, scrapes.",
    panels=(
        Panel(
            "Tick lag (p50, p99)",
            PanelType.TIMESERIES,
            (
                Query(quantile(0.5, M["feltsafe_tick_lag_seconds"]), "p50"),
                Query(quantile(0.99, M["feltsafe_tick_lag_seconds"]), "p99"),
            ),
            unit="s",
            description="Above 250 ms the monitor runs a whole tick behind: add workers.",
        ),
        Panel(
            "Ingest errors per second, by kind",
            PanelType.TIMESERIES,
            (Query(rate(M["feltsafe_ingest_errors"], by=("error",)), "{{error}}"),),
        ),
        Panel(
            "Websocket clients",
            PanelType.TIMESERIES,
            (Query(gauge(M["feltsafe_websocket_clients"], by=("websocket",)), "{{websocket}}"),),
        ),
        Panel(
            "Scrape duration",
            PanelType.TIMESERIES,
            (Query(gauge(M["feltsafe_scrape_duration_seconds"]), "collect"),),
            unit="s",
            description="Collection runs on the media loop; keep it under 10 ms.",
        ),
        Panel(
            "Indicator level changes per second",
            PanelType.TIMESERIES,
            (Query(rate(M["feltsafe_indicator_level_changes"], by=("level",)), "{{level}}"),),
        ),
        Panel(
            "Session-minutes monitored per hour, by mode",
            PanelType.TIMESERIES,
            (Query(increase(M["feltsafe_session_minutes"], "1h", by=("mode",)), "{{mode}}"),),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (FLEET, HEALTH)
