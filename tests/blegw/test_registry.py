"""The registry file: atomic writes, clear errors for corrupt files, no lost concurrent update."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from blegw.registry import Registry, RegistryEntry, RegistryError


def _entry(n: int, name: str = "band") -> RegistryEntry:
    return RegistryEntry(f"{n:032x}", f"5A:00:00:00:00:{n:02X}", name, "alice", ("p256",),
                         1.0)


def test_add_find_rename_remove_round_trip(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state" / "registry.json")
    assert registry.load() == [] and registry.mtime() == 0.0
    registry.add(_entry(1))
    registry.add(_entry(2, "ring"))
    registry.add(_entry(1, "band-2"))              # same module again: replaced, not doubled
    assert [(e.module_id[-1], e.name) for e in registry.load()] == [("2", "ring"),
                                                                    ("1", "band-2")]
    assert registry.find("ring") == _entry(2, "ring")
    assert registry.find("5a:00:00:00:00:01") is not None
    assert registry.find("0000") is None                          # ambiguous prefix
    assert registry.rename(f"{2:032x}", "wrist") and registry.find("wrist") is not None
    assert registry.remove(f"{1:032x}") and not registry.remove(f"{1:032x}")
    assert [e.name for e in registry.load()] == ["wrist"]
    assert (tmp_path / "state" / "registry.json").stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "state").glob(".registry.json.tmp"))


@pytest.mark.parametrize("content", ["{not json", '{"modules": 3}', '[]',
                                     '{"modules": [{"module_id": "zz"}]}',
                                     '{"modules": [{"module_id": "00ff00ff", "address": "x",'
                                     ' "name": "", "account": "a", "suites": [],'
                                     ' "paired_at": 0}]}'])
def test_a_corrupt_registry_is_an_error_naming_the_file_and_is_never_overwritten(
        tmp_path: Path, content: str) -> None:
    path = tmp_path / "registry.json"
    path.write_text(content)
    registry = Registry(path)
    with pytest.raises(RegistryError, match=r"registry\.json"):
        registry.load()
    with pytest.raises(RegistryError):
        registry.add(_entry(1))
    assert path.read_text() == content


def _add_many(path: str, start: int) -> None:
    registry = Registry(Path(path))
    for n in range(start, start + 25):
        registry.add(_entry(n))


def test_concurrent_writers_in_separate_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(path), start)) for start in (1, 101, 201)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = {e.module_id for e in Registry(path).load()}
    assert ids == {f"{n:032x}" for s in (1, 101, 201) for n in range(s, s + 25)}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it checks what sudo blegw pair does")
def test_written_as_root_the_registry_stays_the_daemons(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 4242, 4243)                  # the daemon's user owns its state directory
    registry = Registry(state / "registry.json")
    registry.add(_entry(1))
    for name in ("registry.json", ".registry.json.lock"):
        st = (state / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4243, 0o600)
