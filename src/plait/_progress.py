"""Progress bars on stderr (tqdm), and a no-op stand-in that costs nothing when they are off."""

from __future__ import annotations

from typing import Any


class NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class Bar:
    """A tqdm bar with count, rate and ETA; imported only when asked for."""

    def __init__(self, total: int | None, description: str) -> None:
        from tqdm import tqdm

        self._bar: Any = tqdm(total=total or None, desc=description, unit="task", leave=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def progress(enabled: bool, total: int | None, description: str) -> NoProgress | Bar:
    return Bar(total, description) if enabled else NoProgress()
