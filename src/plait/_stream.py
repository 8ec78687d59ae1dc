"""What ``plait.amap`` returns: an async iterator of the results that can also be awaited.

``async for r in plait.amap(...)`` streams; ``await plait.amap(...)`` (what many write first)
gives the whole list. Either way the run is the same async generator, closed the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator
from typing import Any, TypeVar

R = TypeVar("R")


class AsyncResults(AsyncIterator[R], Awaitable[list[R]]):
    """The results of ``plait.amap``: iterate with ``async for`` or ``await`` the list.

    Close it early with ``await results.aclose()`` or ``contextlib.aclosing(results)``.
    """

    __slots__ = ("_decision", "_run", "_used")

    def __init__(self, run: AsyncGenerator[R, None], decision: Any = None) -> None:
        self._run = run
        self._used = False
        self._decision = decision  # backend="auto": its Decision (explain(flow) shows it)

    def __aiter__(self) -> AsyncResults[R]:
        return self

    def __anext__(self) -> Awaitable[R]:
        self._used = True
        return self._run.__anext__()  # the generator's own awaitable: no extra coroutine per item

    def __await__(self) -> Generator[Any, None, list[R]]:
        if self._used:
            raise RuntimeError(
                "these plait.amap results are already being consumed: use either "
                "'await plait.amap(...)' or 'async for r in plait.amap(...)', not both"
            )
        self._used = True
        return self._all().__await__()

    async def _all(self) -> list[R]:
        return [value async for value in self._run]  # it closes itself, however it ends

    async def aclose(self) -> None:
        """Stop the run: pending tasks are dropped and the workers released."""
        await self._run.aclose()

    def __repr__(self) -> str:
        return f"<plait.amap results {'in use' if self._used else 'not started'}>"
