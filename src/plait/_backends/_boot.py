"""Entry point of a process worker, run as a script: ``python _boot.py CONN_FD LIFELINE_FD``,
or of the template process that forks workers: ``python _boot.py --template REQ_FD LIFE_FD``.

It registers ``plait`` and ``plait._backends`` as bare packages, so that starting a worker
runs neither ``__init__``: not ``plait``'s public API, not the backends' registry (its imports,
dataclasses and typing among them, were a third of the template's start-up). The first time
code in the worker touches an attribute of either (say a task calls ``plait.map``), the real
``__init__`` runs into the same module object.
"""

import os
import sys
import types
from importlib.machinery import SourceFileLoader

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bare_package(name: str, folder: str) -> None:
    init = os.path.join(folder, "__init__.py")
    package = types.ModuleType(name)
    package.__path__ = [folder]
    package.__file__ = init
    package.__package__ = name

    def load_init(attribute: str) -> object:
        path = os.path.join(folder, attribute)
        if os.path.exists(path + ".py") or os.path.isdir(path):
            raise AttributeError(attribute)  # `from . import submodule`: import it, that's all
        del package.__getattr__
        SourceFileLoader(name, init).exec_module(package)  # from its cached bytecode
        return getattr(package, attribute)

    setattr(package, "__getattr__", load_init)  # noqa: B010 - module-level __getattr__
    sys.modules[name] = package


if __name__ == "__main__":
    sys.path[0] = os.path.dirname(_PACKAGE_DIR)  # not this folder: it holds private modules
    _bare_package("plait", _PACKAGE_DIR)
    _bare_package("plait._backends", os.path.dirname(os.path.abspath(__file__)))
    # The user's __main__ is not here. An empty one makes pickle fail at once on what it
    # defines (it then goes by value), and never find a name of this file (say, `main`) instead.
    sys.modules["__main__"] = types.ModuleType("__main__")
    if sys.argv[1] == "--template":  # the template process: it forks the workers
        from plait._backends._template import main
    else:
        from plait._backends._process_worker import main
    main()
