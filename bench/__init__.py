"""Benchmarks (`make bench`): speed and memory targets as ratios measured side by side.

Each ``bench/bench_<name>.py`` defines ``run(quick: bool) -> list[str]`` returning
report lines (Markdown table rows or sentences) that the README records.
"""
