"""uvicorn's server, ended as soon as it is told to stop (imported with uvicorn, when serving)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import uvicorn


class StoppableServer(uvicorn.Server):
    """``uvicorn.Server`` whose :meth:`stop` (from any thread) ends its main loop at once.

    uvicorn looks at ``should_exit`` every tenth of a second, and every stop waited for that
    tick (each ``mdm run`` stopped, each console a test started); here the loop's wait is
    woken instead. The tick's own work (the date header, the request limits) is unchanged.
    """

    #: Seconds between uvicorn's ticks (its own figure).
    TICK = 0.1

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        """uvicorn's main loop, its sleep between ticks ended early by :meth:`stop`."""
        wake = asyncio.Event()
        with self._lock:
            self._loop, self._wake = asyncio.get_running_loop(), wake
        if self.should_exit:  # stop() came before the loop could be woken
            wake.set()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.TICK)
            should_exit = await self.on_tick(counter)

    def stop(self) -> None:
        """Ask the server to finish its requests and end, now rather than at its next tick."""
        self.should_exit = True
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(wake.set)
