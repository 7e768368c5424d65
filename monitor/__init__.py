"""Everything with I/O: ingest adapters, sessions and ticking, the web app, the flag
store, the metrics collector and the command line."""
