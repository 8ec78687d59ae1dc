"""Progress bars (tqdm), and a no-op stand-in that costs nothing when they are off.

tqdm is imported only when a bar is asked for. ``tqdm.auto`` picks the bar: a widget in a
Jupyter notebook, text on stderr elsewhere. plait.map's bar and plait.http's fetch bar are the
same bar; only the unit and the counts beside it differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Status = Callable[[int, int], str]  # (done, failed) -> the text beside the bar, "" for none


class NoProgress:
    def update(self, n: int, failed: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


def failed_only(done: int, failed: int) -> str:
    """The default status: ``failed=N`` once a task failed (errors="collect" or "skip")."""
    return f"failed={failed}" if failed else ""


class Bar:
    """Count, rate and ETA, and a status beside them, redrawn by tqdm a few times a second."""

    EVERY_S = 0.2  # the status is made again at least this often (plait.http's counts move
    # between results), and at once after a failure

    def __init__(
        self, total: int | None, description: str, unit: str = "task", status: Status = failed_only
    ) -> None:
        self._bar = _tqdm(total=total or None, desc=description, unit=unit, leave=True)
        self._status = status
        self._done = self._failed = 0
        self._shown = 0.0

    def update(self, n: int, failed: int = 0) -> None:
        """``n`` more tasks done, ``failed`` of them with an error."""
        self._done += n
        self._failed += failed
        now = time.monotonic()
        if failed or now - self._shown >= self.EVERY_S:
            self._shown = now
            self._show()
        self._bar.update(n)

    def _show(self) -> None:
        status = self._status(self._done, self._failed)
        if status:
            self._bar.set_postfix_str(status, refresh=False)

    @property
    def failed(self) -> int:
        return self._failed

    def close(self) -> None:
        self._show()
        self._bar.close()


def _tqdm(**options: Any) -> Any:
    from tqdm.auto import tqdm  # without ipywidgets it falls back to text, with a warning

    return tqdm(**options)


def progress(
    enabled: bool, total: int | None, description: str, unit: str = "task",
    status: Status = failed_only,
) -> NoProgress | Bar:
    return Bar(total, description, unit, status) if enabled else NoProgress()
