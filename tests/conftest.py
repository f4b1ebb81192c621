"""Put src/ and lib/ first on sys.path, so that tests import this charm's modules."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "lib", ROOT / "src", ROOT):
    if str(path) in sys.path:
        sys.path.remove(str(path))
    sys.path.insert(0, str(path))
