"""TEST DOUBLE: the synchronized-task library's stand-in charm (src/charm.py here), loadable.

The charm's module is loaded from its file under a name of its own (`MODULE`), never as
`charm`: k6-k8s' own src/charm.py is imported as `charm` by the emulator in the same process.
It needs `lib/` on sys.path (as tox sets PYTHONPATH), like any charm using the library.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent  # charmcraft.yaml: metadata, actions and config
MODULE = "task_standin_charm"


def load() -> ModuleType:
    """The stand-in charm's module (loaded once per process)."""
    module = sys.modules.get(MODULE)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(MODULE, ROOT / "src" / "charm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[MODULE]
        raise
    return module
