"""``[workers]`` in platform.toml and the ``serve`` options that override it."""

from __future__ import annotations

from pathlib import Path

import pytest

from blegw_platform.ledger_store import ledger_location
from blegw_platform.workers import WorkerSettings, WorkerSettingsError, response_subscription


def test_workers_settings_come_from_the_file_and_the_options_win(tmp_path: Path) -> None:
    assert WorkerSettings.load(tmp_path) == WorkerSettings(False, None)
    (tmp_path / "platform.toml").write_text(
        '[ledger]\nurl = "ledger.sqlite3"\n[workers]\nreuse_port = true\nshare_group = "p1"\n')
    assert WorkerSettings.load(tmp_path) == WorkerSettings(True, "p1")
    assert WorkerSettings.load(tmp_path, share_group="p2").share_group == "p2"
    assert ledger_location(tmp_path) == tmp_path / "ledger.sqlite3"  # the ledger still reads it
    assert response_subscription("p1") == "$share/p1/blegw/v1/gw/+/resp"
    assert response_subscription(None) == "blegw/v1/gw/+/resp"
    one, two = WorkerSettings(share_group="p1").client_id(), WorkerSettings(
        share_group="p1").client_id()
    assert one != two and WorkerSettings().client_id() == "blegw-platform"


@pytest.mark.parametrize("body", [
    '[workers]\nshare_group = "a/#"\n',          # would name other topics in the filter
    '[workers]\nshare_group = ""\n',
    '[workers]\nreuse_port = "yes"\n',
    '[workers]\nshare_groups = "p"\n',           # a typo is refused, not ignored
    'workers = 3\n',
])
def test_a_hostile_or_mistyped_workers_setting_is_refused_with_its_name(
        tmp_path: Path, body: str) -> None:
    (tmp_path / "platform.toml").write_text(body)
    with pytest.raises(WorkerSettingsError):
        WorkerSettings.load(tmp_path)


def test_a_share_group_option_that_would_widen_the_topic_filter_is_refused() -> None:
    with pytest.raises(WorkerSettingsError, match="share_group"):
        WorkerSettings(share_group="+")


def test_serve_refuses_to_share_secure_channel_payments_among_workers(tmp_path: Path) -> None:
    """A channel's steps live in the worker that opened it: a second worker taking its answer
    would leave the payment to time out, so N workers and channel keys do not start."""
    import subprocess
    import sys

    from blegw_platform.channel_keys import provision_channel_keys
    from blegw_platform.platform import Platform

    state = tmp_path / "state"
    platform = Platform(state)
    provision_channel_keys(state, platform.cas, platform.platform_id)
    platform.close()
    result = subprocess.run(
        [sys.executable, "-m", "blegw_platform", "serve", "--state", str(state),
         "--http", "127.0.0.1:0", "--broker", "mqtt://127.0.0.1:1", "--share-group", "p"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "one worker" in result.stderr
