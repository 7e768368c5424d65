"""``feltsafe demo``: a whole scripted session, end to end, on this machine.

- :mod:`monitor.demo.script`: the scripted conversation and its faults (pure);
- :mod:`monitor.demo.media`: the participants' tracks, their network dip and stall log;
- :mod:`monitor.demo.participants`: the participants' process (two aiortc WHIP peers);
- :mod:`monitor.demo.progress`: what the terminal shows (progress, URLs, summary);
- :mod:`monitor.demo.run`: the orchestration (server, store, participants, shutdown).
"""
