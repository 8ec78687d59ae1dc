"""Bad input gets a clear error that says what to do, raised before any work starts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import _tasks as T
import pytest
from conftest import BACKENDS

import plait

ENTRY_POINTS = ["map", "imap", "amap"]


def call(entry: str, fn: Any, items: Any, **opts: Any) -> Any:
    """Call one entry point and drive it far enough to get its first result."""
    if entry == "map":
        return plait.map(fn, items, **opts)
    if entry == "imap":
        return list(plait.imap(fn, items, **opts))

    async def main() -> list[Any]:
        return [v async for v in plait.amap(fn, items, **opts)]

    return asyncio.run(main())


class Untouched:
    """An iterable that records whether anything was pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(10):
            self.pulled += 1
            yield i


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unknown_backend_lists_choices_and_suggests(entry: str) -> None:
    with pytest.raises(ValueError) as info:
        call(entry, T.square, [1], backend="thraed")
    message = str(info.value)
    assert "thraed" in message
    assert "did you mean 'thread'" in message
    for name in BACKENDS:
        assert repr(name) in message or name in message


def test_unknown_backend_without_close_match_still_lists_choices() -> None:
    with pytest.raises(ValueError) as info:
        plait.map(T.square, [1], backend="zzzzzz")
    assert all(name in str(info.value) for name in BACKENDS)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("workers", [0, -1])
def test_workers_must_be_positive(entry: str, workers: int) -> None:
    with pytest.raises(ValueError, match="workers"):
        call(entry, T.square, [1], backend="thread", workers=workers)


@pytest.mark.parametrize("workers", [1.5, "2", True])
def test_workers_must_be_an_integer(workers: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="workers"):
        plait.map(T.square, [1], backend="thread", workers=workers)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("chunksize", [0, -1, 2.5])
def test_chunksize_must_be_positive(entry: str, chunksize: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="chunksize"):
        call(entry, T.square, [1], backend="thread", chunksize=chunksize)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_errors_mode_must_be_known(entry: str) -> None:
    with pytest.raises(ValueError) as info:
        call(entry, T.square, [1], errors="bogus")
    message = str(info.value)
    assert "bogus" in message
    assert all(mode in message for mode in ("raise", "collect", "skip"))


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="worker"):
        plait.map(T.square, [1], worker=2)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("items", [5, None, 3.5, object()], ids=["int", "None", "float", "object"])
def test_items_must_be_iterable(entry: str, items: Any) -> None:
    with pytest.raises(TypeError, match="iterable"):
        call(entry, T.square, items)


def test_imap_checks_items_at_call_time() -> None:
    with pytest.raises(TypeError, match="iterable"):
        plait.imap(T.square, 5)  # not only when iterated


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_fn_must_be_callable(entry: str) -> None:
    with pytest.raises(TypeError, match="callable"):
        call(entry, 42, [1, 2])


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_swapped_arguments_say_which_order(entry: str) -> None:
    with pytest.raises(TypeError) as info:
        call(entry, [1, 2, 3], T.square)
    message = str(info.value)
    assert "callable" in message
    assert "fn, items" in message, message


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unpicklable_function_on_process_backend_fails_before_input_is_read(entry: str) -> None:
    lock = threading.Lock()

    def holds_a_lock(x: int) -> int:
        with lock:
            return x

    source = Untouched()
    with pytest.raises(plait.SerializationError) as info:
        call(entry, holds_a_lock, source, backend="process", workers=2)
    assert source.pulled == 0, "input was consumed before the function was found unpicklable"
    message = str(info.value)
    assert "pickle" in message
    assert "backend='thread'" in message  # says what to do
    assert isinstance(info.value, plait.PlaitError)


def test_unpicklable_function_error_is_raised_by_imap_itself() -> None:
    lock = threading.Lock()
    source = Untouched()
    with pytest.raises(plait.SerializationError):
        plait.imap(lambda x: (lock, x), source, backend="process")
    assert source.pulled == 0


def test_pool_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="did you mean 'process'"):
        plait.Pool(backend="proces")
    with pytest.raises(ValueError, match="workers"):
        plait.Pool(backend="thread", workers=0)
    with pytest.raises(ValueError):
        plait.Pool(backend="auto")


def test_pool_submit_rejects_non_callable() -> None:
    with (
        plait.Pool(backend="thread", workers=1) as pool,
        pytest.raises(TypeError, match="callable"),
    ):
        pool.submit(42)


def test_pool_map_rejects_bad_options() -> None:
    with plait.Pool(backend="thread", workers=1) as pool:
        with pytest.raises(ValueError, match="errors"):
            pool.map(T.square, [1], errors="bogus")
        with pytest.raises(TypeError, match="iterable"):
            pool.map(T.square, 5)
        assert pool.map(T.square, [3]) == [9]  # still usable


def test_unpicklable_function_on_process_pool_submit() -> None:
    lock = threading.Lock()
    with plait.Pool(backend="process", workers=1) as pool:
        with pytest.raises(plait.SerializationError):
            pool.submit(lambda: lock)
        assert pool.submit(T.square, 3).result(timeout=10) == 9
