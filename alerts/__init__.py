"""The pure rules engine, rule-pack schema, the default felt-safety rule pack, and the
Prometheus alert rules for operations. No I/O: callers hand in text and ``now``."""
