"""A task whose module imports a standard-library module on the template's PRELOAD list."""

from __future__ import annotations

import sqlite3


def sqlite_major(_: object = None) -> int:
    return sqlite3.sqlite_version_info[0]
