"""``blegw status|devices`` answer through ``quick_start`` without typer: the same output, the
same exit codes and the same refusals as through the full command line, and anything but the
plain forms still goes to the full command line (real subprocesses of the installed script)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw import cli, quick_start
from blegw.registry import Registry, RegistryEntry

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quick")
    Registry(root / "registry.json").add(RegistryEntry(
        module_id="0123456789abcdef0123456789abcdef", address="AA:BB:CC:DD:EE:01",
        name="band", account="alice", suites=("p256",), paired_at=time.time() - 60))
    path = root / "blegw.toml"
    path.write_text(f"""[gateway]
id = "gw-quick"
registry = "{root / 'registry.json'}"
control_socket = "{root / 'control.sock'}"
platform_url = "http://127.0.0.1:8080"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[ble]
adapter = "hci0"
""")
    return path


def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    run = subprocess.run([str(BIN / "blegw"), *argv], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, **(env or {})})
    return run.returncode, run.stdout, run.stderr


def _full(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The same command through typer (``blegw.cli``), bypassing the quick path."""
    code = "import sys; from blegw.cli import main; main(sys.argv[1:])"
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, **(env or {})})
    return run.returncode, run.stdout, run.stderr


@pytest.mark.parametrize("argv", [("status",), ("status", "--json"), ("devices",),
                                  ("devices", "--json")])
def test_the_quick_path_answers_as_the_full_command_line(config: Path,
                                                         argv: tuple[str, ...]) -> None:
    quick = _run(*argv, "-c", str(config))
    assert quick == _full(*argv, "-c", str(config))
    assert quick[0] == (15 if argv[0] == "status" else 0)  # no daemon runs for this config
    if argv[0] == "devices":
        assert "band" in quick[1]


def test_the_configuration_comes_from_the_environment_as_in_the_full_command_line(
        config: Path) -> None:
    env = {"BLEGW_CONFIG": str(config)}
    assert _run("devices", env=env) == _full("devices", env=env)
    assert _run("devices", env=env)[0] == 0


def test_a_broken_configuration_is_refused_alike(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    quick = _run("status", "--config", str(bad))
    assert quick == _full("status", "--config", str(bad))
    assert quick[0] == 2 and quick[2].startswith("blegw: invalid configuration")


@pytest.mark.parametrize("argv", [
    ["status"], ["devices", "--json"], ["status", "-c", "x.toml"], ["status", "--config=x"],
    ["devices", "--json", "--config", "y"]])
def test_plain_forms_take_the_quick_path(argv: list[str]) -> None:
    assert quick_start.quick_command(argv) is not None


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["-v", "status"], ["status", "--help"], ["status", "--json", "--json"],
    ["status", "-c"], ["status", "-c", "a", "-c", "b"], ["status", "--config="],
    ["status", "--bogus"], ["pair", "x"], ["status", "extra"]])
def test_everything_else_goes_to_the_full_command_line(argv: list[str]) -> None:
    assert quick_start.quick_command(argv) is None


def test_a_typo_after_status_is_refused_by_the_full_command_line(config: Path) -> None:
    code, _, err = _run("status", "--jsn", "-c", str(config))
    assert code == 2 and "--jsn" in err


def test_both_paths_default_to_the_same_configuration() -> None:
    assert Path(quick_start.DEFAULT_CONFIG) == cli.DEFAULT_CONFIG
