"""Send k6 load tests from any charm to a k6 charm over the `k6_tests` interface.

The provider (the charm that owns the tests) publishes every `*.js` file of a folder, plus an
environment for them, in its application databag; the requirer (the k6 charm) reads, validates
and lists them per related application.

Wire format (the provider's application databag, one key):

```
"k6": '{"tests": {"<file name>": "<script text>", ...}, "environment": {"KEY": "value", ...}}'
```

Provider side (`metadata.yaml`: `provides: {send-k6-tests: {interface: k6_tests}}`):

```python
from charms.k6_k8s.v0.k6_test import K6TestProvider

class MyCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.k6_tests = K6TestProvider(
            self,
            tests_dir="tests/load",  # relative to the charm's root
            environment={"TARGET": "http://my-app:8080"},
        )
        # Publishing is automatic on relation-created/joined, leader-elected, upgrade-charm and
        # config-changed; call `self.k6_tests.publish()` after anything else that changes the
        # environment, e.g. `self.k6_tests.publish(environment={"TARGET": new_url})`.
```

Requirer side (`metadata.yaml`: `requires: {receive-k6-tests: {interface: k6_tests}}`):

```python
from charms.k6_k8s.v0.k6_test import K6TestRequirer

class K6Charm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.k6_tests = K6TestRequirer(self)
        framework.observe(self.k6_tests.on.tests_changed, self._on_tests_changed)

    def _on_tests_changed(self, _: ops.EventBase):
        for app, provided in self.k6_tests.tests().items():
            if provided.error:
                logger.warning("ignoring tests from %s: %s", app, provided.error)
                continue
            ...  # provided.tests: {"name.js": "script"}, provided.environment: {"K": "v"}
```

Malformed data from one application (not JSON, wrong shape, a name that is not a plain file
name, a script over 256 KiB) is reported in that application's `ProvidedTests.error`, with no
tests; the other applications are unaffected.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ops

# The unique Charmhub library identifier, never change it
LIBID = "d4bfdc0567d943c89984f7af2ed84c0d"

# Increment this major API version when introducing breaking changes
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 2

logger = logging.getLogger(__name__)

DEFAULT_PROVIDER_NAME = "send-k6-tests"
DEFAULT_REQUIRER_NAME = "receive-k6-tests"
RELATION_INTERFACE_NAME = "k6_tests"
DATA_KEY = "k6"
MAX_SCRIPT_BYTES = 256 * 1024
MAX_NAME_LENGTH = 128
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an environment variable name (fullmatch)


@dataclass(frozen=True)
class ProvidedTests:
    """What one related application provides over k6_tests (or why it was ignored)."""

    tests: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


class _Malformed(ValueError):
    """The data a provider published does not have the k6_tests shape."""


def _utf8_size(text: str, what: str) -> int:
    """Size in UTF-8 bytes; refuses text that cannot be encoded (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Malformed(f"{what} is not valid Unicode text") from None


def check_test_name(name: str) -> str:
    """A test name must be a plain file name: no path separators, no '..', bounded length.

    Raises:
        ValueError: the name is not one, with a message that quotes it.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise _Malformed(f"test name {name[:32]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if ".." in name or not _NAME_RE.fullmatch(name):
        raise _Malformed(
            f"test name {name!r} is not a plain file name (letters, digits, '_', '-', '.')"
        )
    return name


def _check_script(name: str, text: Any) -> str:
    """A script must be a string of at most MAX_SCRIPT_BYTES bytes (UTF-8)."""
    if not isinstance(text, str):
        raise _Malformed(f"test {name!r} is not a string")
    size = _utf8_size(text, f"test {name!r}")
    if size > MAX_SCRIPT_BYTES:
        raise _Malformed(f"test {name!r} is {size} bytes; the limit is {MAX_SCRIPT_BYTES} bytes")
    return text


def _check_environment(environment: Any) -> dict[str, str]:
    """The environment must map variable names to string values without NUL bytes."""
    if not isinstance(environment, dict):
        raise _Malformed("'environment' is not a JSON object")
    for key, value in environment.items():
        if not ENV_KEY_RE.fullmatch(key):
            raise _Malformed(f"environment variable name {key!r} is not valid")
        if not isinstance(value, str):
            raise _Malformed(f"environment variable {key!r} is not a string")
        _utf8_size(value, f"environment variable {key!r}")
        if "\x00" in value:
            raise _Malformed(f"environment variable {key!r} contains a NUL byte")
    return dict(environment)


def parse_provided(raw: str | None) -> ProvidedTests:
    """Parse and validate one provider's "k6" value; never raises."""
    if raw is None:
        return ProvidedTests()
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise _Malformed(f"{DATA_KEY!r} is not a JSON object")
        tests = data.get("tests", {})
        if not isinstance(tests, dict):
            raise _Malformed("'tests' is not a JSON object")
        checked = {
            check_test_name(name): _check_script(name, text) for name, text in tests.items()
        }
        environment = _check_environment(data.get("environment", {}))
    except json.JSONDecodeError as e:
        return ProvidedTests(error=f"{DATA_KEY!r} is not valid JSON ({e})")
    except _Malformed as e:
        return ProvidedTests(error=str(e))
    return ProvidedTests(tests=checked, environment=environment)


def read_tests_dir(tests_dir: Path) -> dict[str, str]:
    """Every valid `*.js` file directly in tests_dir, by file name; others are logged, skipped."""
    tests: dict[str, str] = {}
    if not tests_dir.is_dir():
        logger.warning("k6 tests folder %s does not exist; publishing no tests", tests_dir)
        return tests
    for path in sorted(tests_dir.glob("*.js")):
        if not path.is_file():
            continue
        try:
            tests[check_test_name(path.name)] = _check_script(path.name, path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, _Malformed) as e:
            logger.warning("not publishing k6 test %s: %s", path, e)
    return tests


class K6TestProvider(ops.Object):
    """Publishes the `*.js` files of a folder, and their environment, to every related k6."""

    def __init__(
        self,
        charm: ops.CharmBase,
        relation_name: str = DEFAULT_PROVIDER_NAME,
        *,
        tests_dir: str | Path,
        environment: Mapping[str, str] | None = None,
    ):
        super().__init__(charm, relation_name)
        self._charm = charm
        self._relation_name = relation_name
        path = Path(tests_dir)
        self.tests_dir = path if path.is_absolute() else charm.charm_dir / path
        self.environment: dict[str, str] = dict(environment or {})
        relation_events = charm.on[relation_name]
        for event in (
            relation_events.relation_created,
            relation_events.relation_joined,
            charm.on.leader_elected,
            charm.on.upgrade_charm,
            charm.on.config_changed,
        ):
            self.framework.observe(event, self._on_publish_event)

    def _on_publish_event(self, _: ops.EventBase) -> None:
        self.publish()

    def publish(self, environment: Mapping[str, str] | None = None) -> None:
        """Write the tests (and the environment, replaced if given) to every relation."""
        if environment is not None:
            self.environment = dict(environment)
        if not self._charm.unit.is_leader():
            return
        relations = self._charm.model.relations[self._relation_name]
        if not relations:
            return
        payload = json.dumps(
            {"tests": read_tests_dir(self.tests_dir), "environment": self.environment},
            sort_keys=True,
        )
        for relation in relations:
            databag = relation.data[self._charm.app]
            if databag.get(DATA_KEY) != payload:
                databag[DATA_KEY] = payload


class K6TestsChangedEvent(ops.EventBase):
    """The tests some related application provides changed, appeared or went away."""


class K6TestRequirerEvents(ops.ObjectEvents):
    """Events of the requirer side."""

    tests_changed = ops.EventSource(K6TestsChangedEvent)


class K6TestRequirer(ops.Object):
    """Reads, per related application, the tests it provides."""

    on = K6TestRequirerEvents()  # pyright: ignore[reportAssignmentType]

    def __init__(self, charm: ops.CharmBase, relation_name: str = DEFAULT_REQUIRER_NAME):
        super().__init__(charm, relation_name)
        self._charm = charm
        self._relation_name = relation_name
        relation_events = charm.on[relation_name]
        for event in (
            relation_events.relation_changed,
            relation_events.relation_departed,
            relation_events.relation_broken,
        ):
            self.framework.observe(event, self._on_relation_event)

    def _on_relation_event(self, _: ops.RelationEvent) -> None:
        self.on.tests_changed.emit()

    def tests(self) -> dict[str, ProvidedTests]:
        """Remote application name -> what it provides (a broken relation is left out)."""
        provided: dict[str, ProvidedTests] = {}
        for relation in self._charm.model.relations[self._relation_name]:
            if relation.app is None:
                continue
            parsed = parse_provided(relation.data[relation.app].get(DATA_KEY))
            if parsed.error:
                logger.warning("ignoring k6 tests from %s: %s", relation.app.name, parsed.error)
            provided[relation.app.name] = parsed
        return provided
