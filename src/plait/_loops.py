"""The event loops plait makes for itself: uvloop's where it is installed (``plait[fast]``).

Only plait's own loops: the loop threads of the sync API (``plait.map`` on the asyncio backend,
``fetch_all``) and a Pool's submit loop. The loop of a caller of ``amap`` or ``afetch_all`` is
the caller's, never replaced. ``PLAIT_UVLOOP=0`` keeps asyncio's own loop with uvloop installed.
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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a thread of plait's own."""
    return _factory()()


def loop_kind() -> str:
    """What plait's own loops are: "uvloop" or "asyncio"."""
    return "asyncio" if _factory() is asyncio.new_event_loop else "uvloop"
