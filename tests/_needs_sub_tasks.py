"""A task whose module imports a submodule of a standard-library package on the template's
PRELOAD list (``sqlite3.dbapi2``: the package, ``sqlite3``, is what counts)."""

from __future__ import annotations

from sqlite3 import dbapi2


def sqlite_major(_: object = None) -> int:
    return dbapi2.sqlite_version_info[0]
