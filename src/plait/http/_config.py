"""The options of one fetch run, checked once when the call is made."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._checks import is_count
from .._retry import Backoff
from ._errors import TooManyOpenFiles

if TYPE_CHECKING:
    from .._clock import Clock

READ_MODES = ("bytes", "text", "json", "none")
DEFAULT_MAX_BODY = 100 * 2**20
_FD_MARGIN = 64  # files kept free beside the sockets: the interpreter, logs, the output file


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """The checked options of one run (see ``fetch_all``)."""

    concurrency: int = 100
    per_host: int | None = None
    rate: str | float | None = None
    burst: int = 1
    retries: int = 3
    timeout: float | None = 30.0
    connect_timeout: float | None = 10.0
    ordered: bool = True
    read: str = "bytes"
    headers: Mapping[str, str] | None = None
    max_body: int | None = DEFAULT_MAX_BODY
    retry_unsafe: bool = False
    adaptive: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    max_retry_after: float = 120.0
    error_for_status: bool = True
    progress: bool = False
    clock: Clock | None = None

    @property
    def window(self) -> int:
        """Inputs taken ahead of the consumer: everything in flight plus as many finished."""
        return 2 * self.concurrency


def make_config(**options: Any) -> FetchConfig:
    """Check the options of ``fetch_all`` once, with messages that say what to do."""
    unknown = set(options) - set(FetchConfig.__dataclass_fields__)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(f"unknown option(s) {names}; see help(plait.http.fetch_all)")
    config = FetchConfig(**options)
    _check_positive("concurrency", config.concurrency)
    if config.per_host is not None:
        _check_positive("per_host", config.per_host)
    _check_positive("burst", config.burst)
    retries = config.retries
    if not is_count(retries, 0):
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    for name in ("timeout", "connect_timeout"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    if config.read not in READ_MODES:
        modes = ", ".join(map(repr, READ_MODES))
        raise ValueError(f"read must be one of {modes}, got {config.read!r}")
    limit = config.max_body
    if limit is not None and not is_count(limit, 0):
        raise ValueError(f"max_body must be a number of bytes or None, got {limit!r}")
    if config.rate is not None:
        from .._ratelimit import Rate

        Rate.parse(config.rate)
    check_open_files(config.concurrency)
    return config


def _check_positive(name: str, value: Any) -> None:
    if not is_count(value, 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_open_files(concurrency: int) -> None:
    """Make sure ``concurrency`` sockets fit under the open-files limit, raising it if allowed.

    The soft limit is raised up to the hard limit when needed (any process may do that); past
    the hard limit this raises ``TooManyOpenFiles`` with what to do, instead of failing with
    "Too many open files" halfway through a run.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit to check
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = concurrency + _open_files() + _FD_MARGIN
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard == resource.RLIM_INFINITY or needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    fits = max(1, hard - _open_files() - _FD_MARGIN)
    raise TooManyOpenFiles(
        f"concurrency={concurrency} needs about {needed} open files but this process may open "
        f"at most {hard} (hard limit); use concurrency={fits} or less, or raise the limit "
        f"(e.g. `ulimit -n {needed}` in the shell, or LimitNOFILE= in a systemd unit)"
    )


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16
