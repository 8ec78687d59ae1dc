"""Entry point of a process worker, run as a script: ``python _boot.py CONN_FD LIFELINE_FD``,
or of the template process that forks workers: ``python _boot.py --template REQ_FD LIFE_FD``.

It registers ``plait`` as a bare package so that starting a worker does not run
``plait/__init__.py`` and the public API behind it (half of a worker's start-up time). The first
time code in the worker touches an attribute of ``plait`` (say a task calls ``plait.map``), the
real ``__init__`` runs into the same module object.
"""

import os
import sys
import types

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_public_api(name: str) -> object:
    package = sys.modules["plait"]
    del package.__getattr__
    init = os.path.join(_PACKAGE_DIR, "__init__.py")
    with open(init) as source:
        exec(compile(source.read(), init, "exec"), package.__dict__)
    return getattr(package, name)


def _bare_package() -> None:
    package = types.ModuleType("plait")
    package.__path__ = [_PACKAGE_DIR]
    package.__file__ = os.path.join(_PACKAGE_DIR, "__init__.py")
    package.__package__ = "plait"
    setattr(package, "__getattr__", _load_public_api)  # noqa: B010 - module-level __getattr__
    sys.modules["plait"] = package


if __name__ == "__main__":
    sys.path[0] = os.path.dirname(_PACKAGE_DIR)  # not this folder: it holds private modules
    _bare_package()
    # The user's __main__ is not here. An empty one makes pickle fail at once on what it
    # defines (it then goes by value), and never find a name of this file (say, `main`) instead.
    sys.modules["__main__"] = types.ModuleType("__main__")
    if sys.argv[1] == "--template":  # the template process: it forks the workers
        from plait._backends._template import main
    else:
        from plait._backends._process_worker import main
    main()
