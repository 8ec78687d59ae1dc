"""The registry: every backend describes itself fully, and that description is what the rest
of plait (chunk sizes, option checks, the CLI, the Literal, the test matrix) is derived from."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest
from conftest import BACKENDS, subprocess_env

import plait
from plait import _backends, _chunks, _cli, _options
from plait._backends import REGISTRY, BackendInfo

pytestmark = pytest.mark.timeout(60)

_TYPES = {  # what each field of a description must hold
    "name": str, "target": str, "workers": (int, type(None)), "chunk_target_s": (float, type(None)),
    "stops_tasks": bool, "initializer": bool, "recycles": bool, "calls_on_loop": bool,
    "coroutines_only": bool, "starts_slowly": bool, "requires": (str, type(None)),
    "extra": (str, type(None)),
    "colour": str,
}


def test_the_description_has_the_fields_this_test_checks() -> None:
    fields = {f.name for f in dataclasses.fields(BackendInfo)}
    assert fields == {*_TYPES, "grid"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_backend_declares_the_full_description(name: str) -> None:
    info = REGISTRY[name]
    assert info.name == name
    for field, kind in _TYPES.items():
        assert isinstance(getattr(info, field), kind), field
    assert info.default_workers() >= 1
    assert info.chunk_target_s is None or info.chunk_target_s > 0
    grid = info.grid(4)
    assert grid and all(isinstance(n, int) and n >= 1 for n in grid)
    assert info.colour.startswith("#") and len(info.colour) == 7
    assert (info.requires is None) == (info.extra is None)  # a dependency comes with its extra
    assert not info.recycles or info.initializer  # recycled workers run the initializer again
    cls = _backends.load(name)
    assert cls.name == name
    for method in ("prepare", "run", "close"):
        assert callable(getattr(cls, method)), method


def test_every_registered_backend_runs_the_conformance_suite() -> None:
    assert tuple(BACKENDS) == tuple(REGISTRY)


def test_what_plait_derives_from_the_registry() -> None:
    assert typing.get_args(_options.BackendName) == ("auto", *REGISTRY)
    assert ("auto", *REGISTRY) == _cli.BACKENDS
    assert {
        n: i.chunk_target_s for n, i in REGISTRY.items() if i.chunk_target_s is not None
    } == _chunks.TARGET_CHUNK_S
    for name in REGISTRY:
        assert f'"{name}"' in _options.DOCS["backend"].replace("\n", " ")


def test_the_registry_imports_no_backend_module() -> None:
    code = (
        "import sys, plait, plait._backends as b; b.REGISTRY; "
        "print(sorted(m for m in sys.modules if m.startswith('plait._backends.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
        check=True, timeout=30,
    )
    loaded = set(eval(out.stdout))
    targets = {"plait._backends" + info.target.split(":")[0] for info in REGISTRY.values()}
    assert loaded and not loaded & targets  # _base (the protocol) only


def test_a_missing_dependency_names_the_install_command() -> None:
    info = dataclasses.replace(REGISTRY["thread"], requires="plait_no_such_module", extra="dask")
    with pytest.raises(plait.BackendUnavailable, match=r"pip install 'plait\[dask\]'"):
        info.check_available()
    REGISTRY["thread"].check_available()  # no dependency: nothing to check


def test_a_registered_backend_with_a_missing_dependency_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = dataclasses.replace(REGISTRY["thread"], requires="plait_no_such_module", extra="x")
    monkeypatch.setitem(REGISTRY, "thread", missing)
    with pytest.raises(plait.BackendUnavailable, match="plait_no_such_module"):
        plait.map(abs, [1], backend="thread")
    assert issubclass(plait.BackendUnavailable, ImportError)


def test_option_checks_follow_the_capabilities() -> None:
    for name, info in REGISTRY.items():
        if not info.initializer:
            with pytest.raises(ValueError, match="initializer needs backend="):
                plait.map(abs, [1], backend=name, initializer=print)  # type: ignore[arg-type]
        if not info.recycles:
            with pytest.raises(ValueError, match="max_tasks_per_worker recycles"):
                plait.map(abs, [1], backend=name, max_tasks_per_worker=1)  # type: ignore[arg-type]
        if not info.stops_tasks:
            with pytest.raises(ValueError, match="timeout needs a backend that can stop"):
                plait.map(abs, [1], backend=name, timeout=1)  # type: ignore[arg-type]
