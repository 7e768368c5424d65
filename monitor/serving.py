"""How every feltsafe process runs its ASGI app on uvicorn (one definition for all).

- ``ws="websockets-sansio"``: the ``websockets`` library's sans-I/O protocol, which
  uvicorn 0.54 names the successor of its deprecated ``"websockets"`` binding;
- ``ws_max_size``: 64 KiB. The beacon and the indicator reject any message over 4 KiB
  with an error frame and keep the connection (monitor/beacon.py, monitor/indicator_ws.py);
  a frame over 64 KiB is not read into memory at all: uvicorn closes that connection
  with 1009 (message too big). Its default, 16 MiB, would buffer a whole oversized frame
  per connection before the application could say no;
- no access log: request paths carry session ids, and ids stay out of logs (DESIGN.md).
"""

from __future__ import annotations

from typing import Any

import uvicorn

WS_MAX_FRAME_BYTES = 64 * 1024


def uvicorn_config(app: Any, **options: Any) -> uvicorn.Config:
    """A uvicorn ``Config`` for ``app`` with the settings above; ``options`` add to them."""
    settings: dict[str, Any] = {
        "ws": "websockets-sansio",
        "ws_max_size": WS_MAX_FRAME_BYTES,
        "access_log": False,
        "lifespan": "on",
    }
    return uvicorn.Config(app, **(settings | options))
