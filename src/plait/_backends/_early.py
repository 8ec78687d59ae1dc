"""Starting a backend's slow part before the run machinery loads."""

from __future__ import annotations


def start_early(name: str) -> None:
    """backend="process": start the template process that forks the workers now, so that it
    boots while the caller loads the run machinery (a program's first run), not after."""
    if name == "process":
        from . import _template

        _template.prestart()
