"""Helpers for testing code that uses plait.

    FakeClock   virtual time: ``plait.map(fn, items, rate="2/s", clock=FakeClock())`` checks
                rate limits and retry backoff exactly, without sleeping

Imported on first use (``plait.testing`` or ``from plait.testing import FakeClock``), not by
``import plait``.
"""

from __future__ import annotations

from ._clock import FakeClock as FakeClock

__all__ = ["FakeClock"]

FakeClock.__module__ = __name__  # reprs and docs show the public name
