"""A bounded hand-over from a task on an event loop to a plain thread.

The loop side awaits room (it never blocks the loop); the thread side waits on a condition.
Each handed item costs a lock, not a loop round trip: a pipeline moves millions through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any

END = object()  # what ``get`` returns once the stream has ended or the hand-off was closed


class Raised:
    """An error the loop side hands over, raised by ``get`` in the thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Handoff:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[Any] = deque()
        self._ready = threading.Condition()
        self._room: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def put(self, item: Any, *, last: bool = False) -> None:
        """On the loop: hand ``item`` over, waiting while the buffer is full (``last``: an end
        or an error, which never waits)."""
        if self._room is None:
            self._loop, self._room = asyncio.get_running_loop(), asyncio.Event()
        while True:
            with self._ready:
                if self._closed:
                    return
                if last or len(self._items) < self._size:
                    self._items.append(item)
                    self._ready.notify()
                    return
                self._room.clear()
            await self._room.wait()

    def get(self, alive: Any = None) -> Any:
        """In a thread: the next item, ``END`` at the end or once closed; raises a handed-over
        error. ``alive()`` false while waiting (the loop side died) also ends it."""
        with self._ready:
            while not self._items:
                if self._closed or (alive is not None and not alive()):
                    return END
                self._ready.wait(0.25)
            was_full = len(self._items) >= self._size
            item = self._items.popleft()
        if was_full:
            self._wake_loop()
        if isinstance(item, Raised):
            raise item.error
        return item

    def _wake_loop(self) -> None:
        loop, room = self._loop, self._room
        if loop is not None and room is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(room.set)

    def close(self) -> None:
        """No more items either way: a waiting ``get`` returns ``END``, ``put`` drops them."""
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify_all()
        self._wake_loop()
