"""Imports go one way: cores <- adapters <- services <- the harness (docs/architecture.md).

Every module under ``src/`` is parsed with ``ast`` (imports inside functions and under
``TYPE_CHECKING`` count: a lazy import is still a dependency) and each import of a project
package is checked against :data:`ALLOWED`. Third-party packages a process must never load are
checked over everything a package can reach (:data:`FORBIDDEN`), so the platform cannot reach
bleak through a shared adapter either. The check is itself tested on a planted tree, and the
real processes are imported in subprocesses to see what they load.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

CORES = {"private_files", "ble_profile", "e2e", "relay_contract", "secure_channel",
         "symmetric_card", "transaction_code", "dynamic_code", "exit_codes"}
ADAPTERS = {"bluez_pairing", "terminal_input", "mqtt_uplink", "vbluez", "transaction_code_image",
            "dynamic_code_image"}
SERVICES = {"wearable_sim", "blegw", "blegw_platform"}
HARNESS = {"blegw_harness"}

_ANYONE = {"private_files", "exit_codes"}
"""Cores every package may use."""

ALLOWED: dict[str, set[str]] = {
    # cores: sans-IO, except private_files (the one private-file writer), which needs none
    "private_files": set(),
    "exit_codes": set(),
    "ble_profile": _ANYONE,
    "e2e": _ANYONE,
    "relay_contract": {"e2e"} | _ANYONE,
    "symmetric_card": {"e2e"} | _ANYONE,
    "secure_channel": {"e2e"} | _ANYONE,
    "transaction_code": {"e2e"} | _ANYONE,
    "dynamic_code": {"e2e", "secure_channel", "transaction_code"} | _ANYONE,
    # adapters
    "bluez_pairing": _ANYONE,
    "terminal_input": _ANYONE,
    "mqtt_uplink": _ANYONE,
    "vbluez": _ANYONE,
    "transaction_code_image": {"e2e", "transaction_code"} | _ANYONE,
    "dynamic_code_image": {"e2e", "transaction_code", "transaction_code_image",
                           "dynamic_code"} | _ANYONE,
    # services
    "wearable_sim": {"ble_profile", "e2e", "symmetric_card", "bluez_pairing",
                     "terminal_input", "transaction_code", "secure_channel",
                     "dynamic_code"} | _ANYONE,
    "blegw": {"ble_profile", "e2e", "relay_contract", "bluez_pairing", "terminal_input",
              "mqtt_uplink", "transaction_code", "transaction_code_image", "dynamic_code",
              "dynamic_code_image"} | _ANYONE,
    "blegw_platform": {"e2e", "symmetric_card", "relay_contract", "mqtt_uplink",
                       "transaction_code", "secure_channel", "dynamic_code"} | _ANYONE,
    # depends on everything; nothing depends on it
    "blegw_harness": CORES | ADAPTERS | SERVICES,
}
"""Which project packages each package may import (package -> packages)."""

_IO = {"asyncio", "aiomqtt", "aiohttp", "bleak", "bless", "dbus_fast", "dbus_next", "socket",
       "sqlite3", "subprocess"}
FORBIDDEN: dict[str, set[str]] = {
    **{core: _IO for core in CORES},
    "blegw_platform": {"bleak", "bless", "dbus_fast", "dbus_next", "zxingcpp", "PIL"},
    "blegw": {"bless", "dbus_next"},
    "mqtt_uplink": {"bleak", "bless", "aiohttp", "dbus_fast"},
    "transaction_code_image": _IO,
    "dynamic_code_image": _IO,
    "dynamic_code": _IO | {"segno", "zxingcpp", "PIL"},
    # the code core and the platform never load an imaging stack
    "transaction_code": _IO | {"segno", "zxingcpp", "PIL"},
}
"""Top-level modules a package must not reach, itself or through what it may import."""


@dataclass(frozen=True)
class Edge:
    module: str
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imports_of(root: Path) -> list[Edge]:
    """Every import in every module under ``root``, as absolute dotted names."""
    edges: list[Edge] = []
    for path in sorted(root.rglob("*.py")):
        name, is_package = _module_name(root, path)
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    if node.level - 1 >= len(base):
                        targets = ["<relative import above the top level>"]
                    else:
                        base = base[:len(base) - (node.level - 1)]
                        targets = [".".join([*base, node.module] if node.module else base)]
                else:
                    targets = [node.module or ""]
            elif (isinstance(node, ast.Call) and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and not node.args[0].value.startswith(".")
                  and ((isinstance(node.func, ast.Attribute)
                        and node.func.attr == "import_module")
                       or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
                targets = [node.args[0].value]
            edges += [Edge(name, node.lineno, target) for target in targets]
    return edges


def project_packages(root: Path) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")}


def violations(root: Path, allowed: dict[str, set[str]],
               forbidden: dict[str, set[str]]) -> list[str]:
    """Every import against the grain under ``root``; empty when the graph is as drawn."""
    ours = project_packages(root)
    problems: list[str] = []
    reach: dict[str, set[str]] = {p: set() for p in ours}
    for edge in imports_of(root):
        source = edge.module.split(".")[0]
        target = edge.target.split(".")[0]
        if source not in allowed:
            problems.append(f"{edge.module}: package {source} is not in the layer table")
            continue
        if edge.target.startswith("<"):
            problems.append(f"{edge}")
        elif target in ours and target != source and target not in allowed[source]:
            problems.append(f"{edge}: {source} may not import {target}")
        elif target not in ours:
            reach[source].add(target)
    for package, banned in forbidden.items():
        seen, todo = {package}, [package]
        while todo:  # everything the package may import, and what those may import
            for dep in allowed.get(todo.pop(), set()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        for dep in sorted(seen & ours):
            for module in sorted(reach[dep] & banned):
                via = "" if dep == package else f" through {dep}"
                problems.append(f"{package} reaches {module}{via}")
    return problems


def test_every_package_is_in_the_layer_table() -> None:
    assert project_packages(SRC) == set(ALLOWED)
    assert set(ALLOWED) == CORES | ADAPTERS | SERVICES | HARNESS


def test_imports_follow_the_layers() -> None:
    assert violations(SRC, ALLOWED, FORBIDDEN) == []


def harness_importers(root: Path) -> list[str]:
    """Every import of the harness from a module outside it."""
    return [str(edge) for edge in imports_of(root)
            if edge.target.split(".")[0] in HARNESS and edge.module.split(".")[0] not in HARNESS]


def test_nothing_imports_the_harness(tmp_path: Path) -> None:
    assert harness_importers(SRC) == []
    _plant(tmp_path, {"blegw/cli.py": "def demo():\n    from blegw_harness import chain\n",
                      "blegw_harness/demo.py": "from blegw_harness import chain\n"})
    assert harness_importers(tmp_path) == ["blegw.cli:2 imports blegw_harness"]


def _plant(root: Path, files: dict[str, str]) -> None:
    for name in ("blegw", "blegw_platform", "mqtt_uplink", "e2e", "wearable_sim",
                 "blegw_harness"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "__init__.py").touch()
    for rel, text in files.items():
        (root / rel).write_text(text)


@pytest.fixture
def planted_allowed() -> dict[str, set[str]]:
    return {"blegw": {"e2e", "mqtt_uplink"}, "blegw_platform": {"e2e", "mqtt_uplink"},
            "mqtt_uplink": set(), "e2e": set(), "wearable_sim": {"e2e"},
            "blegw_harness": {"blegw", "blegw_platform", "mqtt_uplink", "e2e", "wearable_sim"}}


def test_the_check_catches_a_platform_that_imports_the_daemon_inside_a_function(
        tmp_path: Path, planted_allowed: dict[str, set[str]]) -> None:
    _plant(tmp_path, {"blegw_platform/platform.py":
                      "import e2e\n\ndef later():\n    from blegw import service\n"})
    assert violations(tmp_path, planted_allowed, {}) == [
        "blegw_platform.platform:4 imports blegw: blegw_platform may not import blegw"]


def test_the_check_catches_relative_and_dynamic_imports_against_the_grain(
        tmp_path: Path, planted_allowed: dict[str, set[str]]) -> None:
    _plant(tmp_path, {
        "blegw/tools.py": "from .. import wearable_sim\n",
        "blegw/cli.py": "import importlib\nimportlib.import_module('blegw_harness.demo')\n",
        "e2e/suites.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from blegw.config import GatewayConfig\n",
    })
    found = violations(tmp_path, planted_allowed, {})
    assert "blegw.tools:1 imports <relative import above the top level>" in found
    assert ("blegw.cli:2 imports blegw_harness.demo: blegw may not import blegw_harness"
            in found)
    assert "e2e.suites:3 imports blegw.config: e2e may not import blegw" in found
    assert len(found) == 3


def test_the_check_catches_bleak_reached_through_a_shared_adapter(
        tmp_path: Path, planted_allowed: dict[str, set[str]]) -> None:
    _plant(tmp_path, {"mqtt_uplink/endpoint.py": "def scan():\n    import bleak\n"})
    assert violations(tmp_path, planted_allowed, {"blegw_platform": {"bleak"}}) == [
        "blegw_platform reaches bleak through mqtt_uplink"]


def test_the_check_catches_a_package_missing_from_the_table(
        tmp_path: Path, planted_allowed: dict[str, set[str]]) -> None:
    _plant(tmp_path, {})
    (tmp_path / "newpkg").mkdir()
    (tmp_path / "newpkg" / "__init__.py").write_text("import e2e\n")
    assert violations(tmp_path, planted_allowed, {}) == [
        "newpkg: package newpkg is not in the layer table"]


def _loaded_by(*modules: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after importing ``modules``."""
    code = (f"import sys\nfor m in {list(modules)!r}: __import__(m)\n"
            "import json; print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(json.loads(run.stdout))


def test_the_platform_process_loads_no_radio_no_daemon_no_simulator() -> None:
    loaded = _loaded_by("blegw_platform.cli", "blegw_platform.api", "blegw_platform.platform",
                        "blegw_platform.ledger", "blegw_platform.broker_setup")
    assert "aiohttp" in loaded and "cryptography" in loaded  # the check sees real imports
    assert not loaded & {"blegw", "bleak", "bless", "vbluez", "wearable_sim", "dbus_fast",
                         "blegw_harness"}


def test_the_daemon_process_loads_no_platform_no_simulator_no_virtual_radio() -> None:
    loaded = _loaded_by("blegw.cli", "blegw.service", "blegw.tools")
    assert "bleak" in loaded and "aiomqtt" in loaded
    assert not loaded & {"blegw_platform", "wearable_sim", "vbluez", "bless",
                         "blegw_harness"}


def test_the_daemon_loads_the_code_stack_only_when_a_code_is_asked_for() -> None:
    """``blegw code`` needs segno, zxing-cpp and Pillow; the daemon, ``--help`` and ``status``
    must not pay for them."""
    loaded = _loaded_by("blegw.cli", "blegw.service", "blegw.tools", "blegw.daemon_client")
    assert not loaded & {"transaction_code", "transaction_code_image", "segno", "zxingcpp",
                         "PIL"}
    assert {"transaction_code", "segno"} <= _loaded_by("blegw.code_tools")


@pytest.mark.parametrize("module", ["blegw.cli", "blegw.daemon_client", "blegw.config",
                                    "blegw_platform.cli"])
def test_the_command_lines_start_without_heavy_imports(module: str) -> None:
    """``blegw --help|status|devices`` and ``blegw-platform --help`` import only these
    modules before parsing; bench/cli_startup_bench.py measures the time it saves."""
    loaded = _loaded_by(module)
    assert not loaded & {"aiohttp", "aiomqtt", "bleak", "cryptography", "rich", "cbor2",
                         "dbus_fast", "pydantic", "gmssl", "gmssl_pyx", "asyncio"}


@pytest.mark.parametrize("package", ["e2e", "relay_contract"])
def test_lazily_loaded_names_all_resolve(package: str) -> None:
    """The cores load their names on first use: each one listed must exist where it says."""
    code = (f"import {package} as p\nmissing = [n for n in p.__all__ if getattr(p, n, None) "
            "is None]\nassert sorted(p._SUBMODULE) == sorted(p.__all__), 'map != __all__'\n"
            "print(missing)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


HEAVY = {"aiohttp", "aiomqtt", "bleak", "cryptography", "rich", "cbor2", "dbus_fast", "pydantic",
         "gmssl", "gmssl_pyx", "gmalglib", "segno", "zxingcpp", "PIL", "blegw_platform",
         "vbluez", "wearable_sim", "transaction_code", "asyncio"}
"""What ``blegw --help|status|devices`` and ``blegw-platform --help`` must not load: the radio,
HTTP, MQTT, the cryptography stack, rich, the platform, an event loop."""

_RUN_AND_LIST = """import contextlib, io, json, sys
entry = sys.argv[1]
module, _, name = entry.partition(":")
main = getattr(__import__(module, fromlist=[name]), name)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, sorted({n.split('.')[0] for n in sys.modules})]))
"""


def _run_command(entry: str, *argv: str) -> tuple[object, set[str]]:
    """Run a console script's ``main`` with ``argv`` in a fresh interpreter: its exit code and
    the top-level modules it had loaded when it ended."""
    run = subprocess.run([sys.executable, "-c", _RUN_AND_LIST, entry, *argv],
                         capture_output=True, text=True, timeout=60, check=True)
    code, loaded = json.loads(run.stdout)
    return code, set(loaded)


@pytest.mark.parametrize(("entry", "argv", "code"), [
    ("blegw.quick_start:main", ("--help",), 0),
    ("blegw.quick_start:main", ("status",), 15),
    ("blegw.quick_start:main", ("devices", "--json"), 0),
    ("blegw.quick_start:main", ("status", "--json"), 15),
    ("blegw_platform.cli:main", ("--help",), 0),
])
def test_the_quick_commands_run_without_heavy_imports(tmp_path: Path, entry: str,
                                                      argv: tuple[str, ...],
                                                      code: int) -> None:
    """Run to the end (the status commands against a configuration whose daemon is not
    running: exit 15; ``devices`` lists the registry), not just imported: what a command
    imports while it runs counts too."""
    config = tmp_path / "blegw.toml"
    config.write_text(f"""[gateway]
id = "gw-imports"
registry = "{tmp_path / 'registry.json'}"
control_socket = "{tmp_path / 'control.sock'}"
platform_url = "http://127.0.0.1:8080"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[ble]
adapter = "hci0"
""")
    args = (*argv, "--config", str(config)) if argv[0] in ("status", "devices") else argv
    exit_code, loaded = _run_command(entry, *args)
    assert exit_code == code
    assert "exit_codes" in loaded or entry.startswith("blegw_platform")  # it really ran
    banned = HEAVY - {entry.split(".")[0]}  # the platform's own CLI is the platform package
    assert not loaded & banned, sorted(loaded & banned)


def test_the_import_check_sees_a_heavy_command() -> None:
    """The same check on a command that does load the heavy stack (``pair``'s module)."""
    _, loaded = _run_command("blegw.cli:main", "pair", "--help")
    assert not loaded & {"bleak"}  # help alone: typer answers before the command's imports
    code = "import blegw.pairing_tool, sys; print(sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "bleak" in run.stdout and "aiohttp" in run.stdout
