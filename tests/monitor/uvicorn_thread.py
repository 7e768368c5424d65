"""An ASGI app on a real uvicorn, port 0, in a thread with its own event loop."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette

from monitor.serving import uvicorn_config


class UvicornThread:
    """`with UvicornThread(app) as server:` then `server.http` / `server.ws` base URLs."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        # The servers' own settings (monitor/serving.py), lifespan as each test's app has.
        config = uvicorn_config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.http = self.ws = ""

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn died at start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
