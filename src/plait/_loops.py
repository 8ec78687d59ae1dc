"""The event loops plait makes for itself: uvloop's where it is installed (``plait[fast]``).

Only plait's own loops that run coroutines: those of the sync API's runs on the asyncio backend
(``plait.map``, ``imap``), of ``fetch_all``, and of a Pool's submitted coroutines. The loop of a
caller of ``amap`` or ``afetch_all`` is the caller's, never replaced. A run on threads or
processes keeps asyncio's loop: its loop only hands out chunks, and importing uvloop (4-8 ms)
would slow a program's first call. ``PLAIT_UVLOOP=0`` keeps asyncio's loop everywhere.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable


@functools.cache
def _factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if os.environ.get("PLAIT_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop(fast: bool = True) -> asyncio.AbstractEventLoop:
    """A new loop for a thread of plait's own; uvloop's if ``fast`` and it is there."""
    return _factory()() if fast else asyncio.new_event_loop()
