"""The exit codes are one enum, and docs/cli.md lists exactly its members with their numbers:
a script written from the docs tests the numbers the commands return."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from blegw.tool_errors import ToolError
from exit_codes import ExitCode

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
ROW = re.compile(r"^\| (\d+) \| `([A-Z_]+)` \|", re.MULTILINE)


def documented(doc: Path = DOC) -> dict[str, int]:
    section = doc.read_text().split("### Exit codes\n", 1)[1].split("\n### ", 1)[0]
    rows = ROW.findall(section)
    names = [name for _, name in rows]
    assert len(names) == len(set(names)), "a name listed twice"
    return {name: int(number) for number, name in rows}


def test_the_documented_exit_codes_are_the_enum() -> None:
    assert documented() == {member.name: member.value for member in ExitCode}


def test_no_two_exit_codes_share_a_number() -> None:
    assert len({m.value for m in ExitCode}) == len(ExitCode)


def test_the_check_catches_a_table_that_drifted(tmp_path: Path) -> None:
    drifted = DOC.read_text().replace("| 14 | `TIMEOUT` |", "| 18 | `TIMEOUT` |")
    assert drifted != DOC.read_text()
    (tmp_path / "cli.md").write_text(drifted)
    assert documented(tmp_path / "cli.md") != {member.name: member.value for member in ExitCode}


@pytest.mark.parametrize("kind", ["failed", "usage", "not_found", "bonding", "certificate",
                                  "platform", "timeout", "daemon", "declined", "bad_code"])
def test_a_tool_error_named_by_kind_exits_with_that_member(kind: str) -> None:
    assert ToolError("x", kind).exit_code is ExitCode[kind.upper()]  # type: ignore[arg-type]
