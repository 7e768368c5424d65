"""Pure measurement: RTP statistics, speech activity, conversation dynamics, video
freezes and the quality score.

Nothing in this package performs I/O or reads a clock: every time-dependent call takes
``now`` (monotonic seconds) and probes that must notice *missing* input expose
``next_deadline()`` and ``on_timer(now=...)``. Bad input is counted, never raised.
"""
