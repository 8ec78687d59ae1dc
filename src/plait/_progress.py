"""Progress bars (tqdm), and a no-op stand-in that costs nothing when they are off.

tqdm is imported only when a bar is asked for. ``tqdm.auto`` picks the bar: a widget in a
Jupyter notebook, text on stderr elsewhere.
"""

from __future__ import annotations

from typing import Any


class NoProgress:
    def update(self, n: int, failed: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class Bar:
    """Count, rate and ETA; and ``failed=N`` once a task failed (errors="collect" or "skip"),
    as the fetch bar shows it."""

    def __init__(self, total: int | None, description: str) -> None:
        self._bar = _tqdm(total=total or None, desc=description, unit="task", leave=True)
        self._failed = 0

    def update(self, n: int, failed: int = 0) -> None:
        """``n`` more tasks done, ``failed`` of them with an error."""
        if failed:
            self._failed += failed
            self._bar.set_postfix_str(f"failed={self._failed}", refresh=False)
        self._bar.update(n)

    @property
    def failed(self) -> int:
        return self._failed

    def close(self) -> None:
        self._bar.close()


def _tqdm(**options: Any) -> Any:
    from tqdm.auto import tqdm  # without ipywidgets it falls back to text, with a warning

    return tqdm(**options)


def progress(enabled: bool, total: int | None, description: str) -> NoProgress | Bar:
    return Bar(total, description) if enabled else NoProgress()
