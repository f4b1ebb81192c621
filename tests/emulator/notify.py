"""`pebble notify KEY [name=value ...]` for emulated units: writes the notice for the emulator.

The file appears atomically (write then rename) in $K6EMU_NOTICE_DIR.
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    """Record one custom notice; exit non-zero on bad usage like the real CLI."""
    if len(argv) < 2 or argv[0] != "notify":
        print("usage: pebble notify KEY [name=value ...]", file=sys.stderr)
        return 2
    key, data = argv[1], {}
    for item in argv[2:]:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"error: invalid data {item!r}", file=sys.stderr)
            return 2
        data[name] = value
    folder = os.environ["K6EMU_NOTICE_DIR"]
    stamp = f"{time.time_ns()}-{os.getpid()}"
    tmp = os.path.join(folder, f".{stamp}.tmp")
    with open(tmp, "w") as f:
        json.dump({"key": key, "data": data}, f)
    os.rename(tmp, os.path.join(folder, f"{stamp}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
