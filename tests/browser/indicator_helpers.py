"""A monitor on its own thread and event loop, for the indicator's real-browser test.

Playwright's sync API drives Chromium from the test's thread; the monitor (uvicorn on a
free port of 127.0.0.1, plain HTTP and websockets: no network namespace is needed) and
its simulated participants run on a second thread's event loop. :meth:`call` runs a
function there and returns its result, so the test can freeze a participant's video at
a moment of its choosing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar, overload

from starlette.applications import Starlette

from tests.monitor.indicator_sim import serve

T = TypeVar("T")


class MonitorThread:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready: Future[int] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="monitor", daemon=True)

    def __enter__(self) -> MonitorThread:
        self._thread.start()
        self.port = self._ready.result(timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    @overload
    def call(self, function: Callable[[], Coroutine[Any, Any, T]], timeout: float = ...) -> T: ...

    @overload
    def call(self, function: Callable[[], T], timeout: float = ...) -> T: ...

    def call(self, function: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``function`` on the monitor's loop; its result (awaited if a coroutine)."""

        async def run() -> Any:
            result = function()
            if asyncio.iscoroutine(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def clock(self) -> float:
        return self.call(self._loop.time)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self.app) as port:
            self._ready.set_result(port)
            await self._stop.wait()
        await self.app.state.registry.aclose()
