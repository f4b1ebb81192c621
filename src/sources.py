"""Where a run's script comes from: the config, a related charm, an action parameter, a template.

Every input is validated here and refused with a message a user can act on (ValueError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The k6_tests library's rules are this charm's for every source: the same size limit, test
# names and environment variable names.
from charms.k6_k8s.v0.k6_test import (
    ENV_KEY_RE,
    MAX_SCRIPT_BYTES,
    ProvidedTests,
    check_test_name,
)

CONFIG_TEST_NAME = "load-test.js"
INLINE_TEST_NAME = "inline.js"


@dataclass(frozen=True)
class Script:
    """One runnable test: a plain file name, its text, and the environment it gets."""

    name: str
    text: str
    source: str  # "config", "inline", "quick", or "app:<name>"
    environment: Mapping[str, str] = field(default_factory=dict)
    expected_s: float | None = None  # how long it runs, where the charm knows it


def validate_script(text: str, what: str = "script") -> str:
    """Refuse an oversized script, then what `runnable` refuses."""
    size = len(text.encode())
    if size > MAX_SCRIPT_BYTES:
        raise ValueError(
            f"{what} is {size} bytes; the limit is {MAX_SCRIPT_BYTES} bytes "
            f"({MAX_SCRIPT_BYTES // 1024} KiB)"
        )
    return runnable(text, what)


def runnable(text: str, what: str) -> str:
    """Refuse an empty script or a NUL byte: k6 could only fail on them, later."""
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if "\x00" in text:
        raise ValueError(f"{what} contains a NUL byte")
    return text


def _split_entries(text: str) -> list[str]:
    """Split on commas and newlines outside double quotes."""
    entries, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char in ",\n" and not quoted:
            entries.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise ValueError(f"environment: unbalanced double quote in {text!r}")
    entries.append("".join(current))
    return [e.strip() for e in entries if e.strip()]


def parse_environment(text: str) -> dict[str, str]:
    """Parse `KEY=VALUE` pairs; values may contain '=', quoted values may contain commas."""
    environment: dict[str, str] = {}
    for entry in _split_entries(text):
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"environment entry {entry!r} is not KEY=VALUE with a valid KEY")
        value = value.strip()
        if "\x00" in value:
            raise ValueError(f"environment entry {key!r} has a NUL byte in its value")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        elif '"' in value:
            raise ValueError(f"environment entry {entry!r} has a stray double quote")
        environment[key] = value
    return environment


def from_config(load_test: str, environment: Mapping[str, str]) -> Script:
    """The `load-test` config script."""
    if not load_test.strip():
        raise ValueError(
            "no test to run: set one with `juju config k6 load-test=@script.js` "
            "or name a related test with `start app=<app> test=<name>` (see `list`)"
        )
    validate_script(load_test, "the load-test config script")
    return Script(CONFIG_TEST_NAME, load_test, "config", dict(environment))


def from_inline(text: str, environment: Mapping[str, str]) -> Script:
    """A script passed as the `script` action parameter."""
    validate_script(text, "the script parameter")
    return Script(INLINE_TEST_NAME, text, "inline", dict(environment))


def from_app(
    app: str, test: str, provided: Mapping[str, ProvidedTests], environment: Mapping[str, str]
) -> Script:
    """A test a related app provides; the config environment overrides the app's."""
    check_test_name(test)  # the user's parameter: say why no app could provide such a name
    if app not in provided:
        known = ", ".join(sorted(provided)) or "none"
        raise ValueError(f"no related app {app!r} provides tests (related: {known})")
    tests = provided[app]
    if tests.error:
        raise ValueError(f"tests from {app!r} are unusable: {tests.error}")
    if test not in tests.tests:
        known = ", ".join(sorted(tests.tests)) or "none"
        raise ValueError(f"{app!r} provides no test {test!r} (it provides: {known})")
    # parse_provided refused a name, a type or a size the library does not accept: not again
    runnable(tests.tests[test], f"test {test!r} from {app!r}")
    merged = {**tests.environment, **environment}
    return Script(test, tests.tests[test], f"app:{app}", merged)
