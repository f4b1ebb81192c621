"""Packing checks: charmcraft.yaml, metadata.yaml, config.yaml and actions.yaml, without packing.

`charmcraft pack` needs LXD or Multipass; these tests check what can be checked without them.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import keyword
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from charms.k6_k8s.v0 import k6_test
from ops import testing
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
TESTER = ROOT / "tests" / "integration" / "testers" / "k6-tester"


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


CHARMCRAFT = _yaml(ROOT / "charmcraft.yaml")
METADATA = _yaml(ROOT / "metadata.yaml")
CONFIG = _yaml(ROOT / "config.yaml")
ACTIONS = _yaml(ROOT / "actions.yaml")
TESTER_CHARMCRAFT = _yaml(TESTER / "charmcraft.yaml")
CHARM_SOURCE = ast.parse((ROOT / "src" / "charm.py").read_text())

PLATFORMS = {"amd64", "arm64"}
BASE_RE = re.compile(r"^ubuntu@\d{2}\.\d{2}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ACTION_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9-_]*$")  # charmcraft's JujuActions rule
CONFIG_TYPES = {"string": str, "int": int, "float": (int, float), "boolean": bool, "secret": str}
JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}
RELATION_KEYS = {"interface", "limit", "optional", "scope", "description"}
# Packages whose sdist needs a Rust toolchain: the charm plugin builds charm-requirements from
# source (`pip install --no-binary=:all:`) unless listed in charm-binary-python-packages.
RUST_BUILT = {"pydantic-core", "cryptography", "rpds-py", "jiter", "orjson", "bcrypt"}
# Files of the packed charm that the charm part must not filter out with `prime`.
CHARM_FILES = ("dispatch", "src/charm.py", "venv/ops/__init__.py", "templates/quick-test.js.j2")


# ------------------------------------------------------------------ charmcraft.yaml


def _charm_part(project: Mapping[str, Any]) -> dict[str, Any]:
    parts = project.get("parts")
    assert isinstance(parts, dict) and "charm" in parts, "charmcraft.yaml has no `charm` part"
    return parts["charm"]


@pytest.mark.parametrize("project", [CHARMCRAFT, TESTER_CHARMCRAFT], ids=["k6-k8s", "k6-tester"])
def test_charmcraft_yaml_is_a_platforms_charm_for_amd64_and_arm64(project: dict):
    assert project["type"] == "charm"
    assert BASE_RE.match(project["base"]), project["base"]
    assert "bases" not in project, "`bases` is the old syntax; use base + platforms"
    assert set(project["platforms"]) >= PLATFORMS
    for name, platform in project["platforms"].items():
        # shorthand (null: build on and for `name`) or explicit build-on/build-for lists
        assert platform is None or (
            isinstance(platform.get("build-on"), list)
            and isinstance(platform.get("build-for"), list)
        ), name


@pytest.mark.parametrize("project_dir", [ROOT, TESTER], ids=["k6-k8s", "k6-tester"])
def test_charm_part_builds_from_pinned_requirements(project_dir: Path):
    part = _charm_part(_yaml(project_dir / "charmcraft.yaml"))
    assert part["plugin"] == "charm"
    assert part.get("source", ".") == "."
    requirements = part["charm-requirements"]
    assert requirements, "charm-requirements is empty"
    for name in requirements:
        for line in _requirement_lines(project_dir / name):
            assert "==" in line, f"{name}: {line!r} is not pinned with =="


def _requirement_lines(path: Path) -> list[str]:
    assert path.is_file(), f"{path.name} does not exist"
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _primed(path: str, patterns: Iterable[str]) -> bool:
    """Whether a file of the part's install dir survives a `prime` file list (craft-parts)."""
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(f"{pattern}/"):
            return True
    return False


def test_charm_part_prime_keeps_the_charm():
    prime = _charm_part(CHARMCRAFT).get("prime")
    if prime:
        dropped = [path for path in CHARM_FILES if not _primed(path, prime)]
        assert not dropped, f"prime {prime} drops {dropped}"


def _dependency_closure(requirement_files: Iterable[Path]) -> set[str]:
    """Distributions the requirements pull in, from this environment's installed metadata."""
    todo = [
        Requirement(line).name
        for path in requirement_files
        for line in _requirement_lines(path)
        if not line.startswith("-")
    ]
    for name in todo:
        try:
            importlib_metadata.distribution(name)
        except importlib_metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here: its dependencies are unknown")
    seen: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib_metadata.requires(name) or []
        except importlib_metadata.PackageNotFoundError:
            continue
        for text in requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_source_built_dependencies_have_a_rust_toolchain():
    part = _charm_part(CHARMCRAFT)
    closure = _dependency_closure(ROOT / name for name in part["charm-requirements"])
    binary = {canonicalize_name(n) for n in part.get("charm-binary-python-packages", [])}
    toolchain = "cargo" in part.get("build-packages", [])  # Debian/Ubuntu's cargo brings rustc
    needs_rust = sorted((closure & RUST_BUILT) - binary)
    assert toolchain or not needs_rust, f"built from source without cargo: {needs_rust}"


def _pins(path: Path) -> dict[str, str]:
    """Each requirement name and the version it is pinned to."""
    pins = {}
    for line in _requirement_lines(path):
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _imported_distributions() -> set[str]:
    """The distributions whose modules src/ and lib/ import (the standard library aside)."""
    src = ROOT / "src"
    packages = {path.parent.name for path in src.glob("*/__init__.py")}
    local = {path.stem for path in src.glob("*.py")} | packages | {"charms", "__future__"}
    modules: set[str] = set()
    for path in [*src.rglob("*.py"), *(ROOT / "lib").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    owners = importlib_metadata.packages_distributions()
    third_party = modules - local - set(sys.stdlib_module_names)
    return {canonicalize_name(d) for module in third_party for d in owners.get(module, [module])}


def test_the_charm_pins_what_it_imports_and_the_pydantic_pair_only():
    # PyYAML, say, comes with ops and cosl; a pin of its own would be one more thing to bump.
    pins = set(_pins(ROOT / "requirements.txt"))

    assert pins == _imported_distributions() | {"pydantic", "pydantic-core"}


def test_pydantic_is_pinned_with_the_exact_core_it_requires():
    pins = _pins(ROOT / "requirements.txt")
    assert "pydantic" in pins and "pydantic-core" in pins, "pin pydantic and pydantic-core"
    assert importlib_metadata.version("pydantic") == pins["pydantic"]
    wanted = [Requirement(r) for r in importlib_metadata.requires("pydantic") or [] if "core" in r]
    assert [str(r.specifier) for r in wanted] == [f"=={pins['pydantic-core']}"]
    assert "pydantic-core" in _charm_part(CHARMCRAFT)["charm-binary-python-packages"]


# ------------------------------------------------------------------ metadata.yaml


def test_workload_image_is_a_published_ubuntu_xk6_track():
    image = METADATA["resources"]["k6-image"]["upstream-source"]
    # the OCI factory's tracks: <major>[.<minor>]-<ubuntu release>; there is no `latest`
    assert re.fullmatch(r"ubuntu/xk6:1(\.\d+)?-(24|26)\.04", image), image


def test_metadata_links_point_to_no_other_project():
    links = {k: v for k, v in METADATA.items() if k in ("website", "source", "issues", "docs")}
    assert not any("k6-k8s-operator" in str(v) for v in links.values()), links


def test_metadata_names_and_describes_the_charm():
    assert NAME_RE.match(METADATA["name"]), METADATA["name"]
    assert METADATA["summary"].strip() and METADATA["description"].strip()
    for field in ("name", "summary", "description"):
        assert field not in CHARMCRAFT, f"{field} is in both charmcraft.yaml and metadata.yaml"
    assert "juju >= 3.4" in METADATA["assumes"]  # relation.load/save and pebble notices


def test_every_container_has_an_oci_image_resource_with_an_upstream_source():
    containers = METADATA["containers"]
    resources = METADATA["resources"]
    assert containers
    for name, container in containers.items():
        resource = container.get("resource")
        assert resource in resources, f"container {name}: no resource {resource!r}"
        assert resources[resource]["type"] == "oci-image"
        assert resources[resource].get("upstream-source"), f"{resource} has no upstream-source"
    images = {n for n, r in resources.items() if r["type"] == "oci-image"}
    assert images == {c["resource"] for c in containers.values()}, "unused oci-image resource"


def _relations(meta: Mapping[str, Any]) -> list[tuple[str, str, dict]]:
    return [
        (section, name, spec)
        for section in ("peers", "requires", "provides")
        for name, spec in (meta.get(section) or {}).items()
    ]


@pytest.mark.parametrize("meta", [METADATA, TESTER_CHARMCRAFT], ids=["k6-k8s", "k6-tester"])
def test_every_relation_has_an_interface_and_valid_keys(meta: dict):
    names = [name for _, name, _ in _relations(meta)]
    assert names and len(names) == len(set(names)), f"duplicate endpoint names: {names}"
    for section, name, spec in _relations(meta):
        assert NAME_RE.match(name) and not name.startswith("juju-"), name
        assert isinstance(spec, dict), f"{section}.{name} is not a mapping"
        assert re.match(r"^[a-z][a-z0-9_-]*$", spec.get("interface", "")), f"{name}: interface"
        assert set(spec) <= RELATION_KEYS, f"{name}: unknown keys {set(spec) - RELATION_KEYS}"
        assert isinstance(spec.get("limit", 1), int) and spec.get("limit", 1) >= 1, name
        assert isinstance(spec.get("optional", False), bool), name


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level `NAME = <literal>` assignments."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    constants[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return constants


def test_endpoints_the_code_uses_are_declared():
    constants = _module_constants(CHARM_SOURCE)
    assert constants["PEER"] in METADATA["peers"]
    assert constants["CONTAINER"] in METADATA["containers"]
    receive = METADATA["requires"][k6_test.DEFAULT_REQUIRER_NAME]
    send = TESTER_CHARMCRAFT["provides"][k6_test.DEFAULT_PROVIDER_NAME]
    assert receive["interface"] == send["interface"] == k6_test.RELATION_INTERFACE_NAME


# ------------------------------------------------------------------ config.yaml


def test_config_options_have_a_valid_type_a_matching_default_and_a_description():
    options = CONFIG["options"]
    assert set(CONFIG) == {"options"} and options
    for name, option in options.items():
        assert NAME_RE.match(name), name
        assert set(option) <= {"type", "default", "description"}, name
        assert option["type"] in CONFIG_TYPES, f"{name}: type {option['type']!r}"
        assert option.get("description", "").strip(), f"{name} has no description"
        if "default" in option:
            default = option["default"]
            assert isinstance(default, CONFIG_TYPES[option["type"]]), f"{name}: {default!r}"
            assert option["type"] == "boolean" or not isinstance(default, bool), name


# ------------------------------------------------------------------ actions.yaml


def _check_param_schema(action: str, name: str, schema: dict) -> None:
    """Structural JSON-schema checks of one action parameter."""
    kind = schema.get("type")
    assert kind in JSON_TYPES, f"{action}.{name}: type {kind!r}"
    assert schema.get("description", "").strip(), f"{action}.{name} has no description"
    if "default" in schema:
        default = schema["default"]
        assert isinstance(default, JSON_TYPES[kind]), f"{action}.{name}: default {default!r}"
        assert kind == "boolean" or not isinstance(default, bool), f"{action}.{name}"
    for bound in ("minimum", "maximum"):
        if bound in schema:
            assert kind in ("integer", "number"), f"{action}.{name}: {bound} on {kind}"
            assert isinstance(schema[bound], (int, float)) and not isinstance(schema[bound], bool)
    if "minimum" in schema and "default" in schema:
        assert schema["default"] >= schema["minimum"], f"{action}.{name}: default < minimum"


def test_actions_have_valid_names_descriptions_and_parameter_schemas():
    assert ACTIONS
    for action, spec in ACTIONS.items():
        assert ACTION_NAME_RE.match(action) and not keyword.iskeyword(action), action
        assert spec.get("description", "").strip(), f"{action} has no description"
        assert set(spec) <= {"description", "params", "required", "additionalProperties"}
        assert isinstance(spec.get("additionalProperties", False), bool)
        params = spec.get("params", {})
        assert isinstance(params, dict), f"{action}: params is not a mapping"
        assert set(spec.get("required", [])) <= set(params), f"{action}: unknown required"
        for name, schema in params.items():
            assert NAME_RE.match(name), f"{action}: parameter name {name!r}"
            _check_param_schema(action, name, schema)


def test_action_schemas_are_valid_json_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed here")
    for spec in ACTIONS.values():
        schema = {
            "type": "object",
            "properties": spec.get("params", {}),
            "required": spec.get("required", []),
            "additionalProperties": spec.get("additionalProperties", True),
        }
        jsonschema.Draft7Validator.check_schema(schema)
        defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
        jsonschema.Draft7Validator(schema).validate(defaults)


# ------------------------------------------------------------------ what the code reads


def _dataclass_fields(tree: ast.Module, class_name: str) -> dict[str, Any]:
    """Field name -> literal default of a dataclass in the module."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                item.target.id: ast.literal_eval(item.value) if item.value else None
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError(f"no class {class_name} in src/charm.py")


def _observed_actions(tree: ast.Module) -> set[str]:
    """Actions the charm observes: every `<something>.on.<name>_action` attribute."""
    return {
        node.attr.removesuffix("_action").replace("_", "-")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.endswith("_action")
        and isinstance(node.value, ast.Name) and node.value.id == "on"
    }  # fmt: skip


def test_config_options_are_exactly_the_k6config_fields_with_the_same_defaults():
    fields = _dataclass_fields(CHARM_SOURCE, "K6Config")
    options = CONFIG["options"]
    assert {f.replace("_", "-") for f in fields} == set(options)
    for field, default in fields.items():
        assert options[field.replace("_", "-")].get("default") == default, field


def test_start_params_are_exactly_the_startparams_fields_with_the_same_defaults():
    fields = _dataclass_fields(CHARM_SOURCE, "StartParams")
    params = ACTIONS["start"]["params"]
    assert {f.replace("_", "-") for f in fields} == set(params)
    for field, default in fields.items():
        declared = params[field.replace("_", "-")].get("default")
        assert declared == default or (declared is None and default == ""), field


def test_every_declared_action_is_observed_and_vice_versa():
    assert _observed_actions(CHARM_SOURCE) == set(ACTIONS)


def test_actions_without_a_params_dataclass_take_no_parameters():
    for action, spec in ACTIONS.items():
        if action != "start":
            assert not spec.get("params") and spec.get("additionalProperties") is False, action


# ------------------------------------------------------------------ charmcraft's own models


@pytest.mark.parametrize("project_dir", [ROOT, TESTER], ids=["k6-k8s", "k6-tester"])
def test_charmcraft_accepts_the_project(project_dir: Path):
    models = pytest.importorskip(
        "charmcraft.models.project",
        reason="charmcraft is not installed here (pip install charmcraft==4.5.0 to run this)",
    )
    pytest.importorskip("charmcraft.parts").setup_parts()  # registers the `charm` plugin
    project = models.CharmcraftProject.from_yaml_file(project_dir / "charmcraft.yaml")
    assert type(project).__name__ == "PlatformCharm"
    assert set(project.platforms) >= PLATFORMS
    assert list(project.parts) == ["charm"]
    if project_dir == ROOT:
        assert project.name == METADATA["name"]
        assert set(project.actions or {}) == set(ACTIONS)
        assert set((project.config or {})["options"]) == set(CONFIG["options"])
        legacy = pytest.importorskip("charmcraft.models.metadata").CharmMetadataLegacy
        assert legacy.unmarshal(dict(METADATA)).containers == METADATA["containers"]
        # from_yaml_file does not type-check config.yaml; JujuConfig does. (charmcraft 4.5's
        # JujuActions cannot validate anything: its name regex is a pydantic private attribute.)
        juju_config = pytest.importorskip("charmcraft.models.config").JujuConfig
        assert set(juju_config.model_validate(CONFIG).options or {}) == set(CONFIG["options"])


# ------------------------------------------------------------------ the tester charm


def _tester_module() -> ModuleType:
    """The tester's src/charm.py, imported under a name of its own."""
    name = "k6_tester_charm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTER / "src" / "charm.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_tester_publishes_its_tests_and_environment_to_a_related_k6():
    charm = _tester_module().K6TesterCharm
    ctx = testing.Context(charm, charm_root=TESTER)
    relation = testing.Relation(k6_test.DEFAULT_PROVIDER_NAME, remote_app_name="k6")

    state = testing.State(leader=True, relations={relation})

    out = ctx.run(ctx.on.relation_created(relation), state)

    published = json.loads(out.get_relation(relation.id).local_app_data[k6_test.DATA_KEY])
    assert sorted(published["tests"]) == ["smoke.js", "steady.js"]
    assert published["environment"] == {"GREETING": "hello from k6-tester"}
    assert k6_test.parse_provided(json.dumps(published)).error is None
    assert out.unit_status == testing.ActiveStatus("providing 2 k6 test(s)")


def _k6_binary() -> str | None:
    found = shutil.which("k6")
    beside_python = Path(sys.executable).parent / "k6"
    return found or (str(beside_python) if beside_python.exists() else None)


@pytest.mark.parametrize("script", sorted((TESTER / "tests").glob("*.js")), ids=lambda p: p.name)
def test_tester_scripts_are_valid_k6_scripts(script: Path):
    k6 = _k6_binary()
    if k6 is None:
        pytest.skip("no k6 binary here")
    inspected = subprocess.run(
        [k6, "inspect", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["scenarios"], f"{script.name} declares no scenario"
