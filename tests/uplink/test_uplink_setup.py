"""Setting the uplink up: the shipped broker files, broker-setup and broker-user, the
gateway's ``[mqtt]`` keys and the platform's ``serve`` options. Real files, real processes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from blegw.config import ConfigError, load_config, parse_config
from blegw_platform.broker_setup import (
    PLATFORM_USER,
    BrokerSetupError,
    add_gateway,
    hash_password,
    render_acl,
    render_conf,
    setup,
)

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_shipped_configuration_is_what_broker_setup_writes() -> None:
    deploy = ROOT / "deploy" / "mosquitto"
    assert (deploy / "mosquitto.conf").read_text() == render_conf(
        Path("/etc/mosquitto/blegw"), data=Path("/var/lib/mosquitto"))
    assert (deploy / "acl").read_text() == render_acl()
    conf = (deploy / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "use_username_as_clientid true",
                 "max_packet_size 16384", "per_listener_settings false"):
        assert f"\n{line}\n" in conf
    # use_username_as_clientid is a listener setting: before any listener line it would open a
    # second, default listener on 1883 and leave the TLS one without it.
    assert conf.index("listener 8883") < conf.index("use_username_as_clientid")


def test_password_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run([exe, "-b", str(passwd), "gw-1", "s3cret"], check=True)
    line = passwd.read_text().strip()
    user, _, digest = line.partition(":")
    _, seven, iterations, salt, _ = digest.split("$")
    import base64

    assert (user, seven) == ("gw-1", "7")
    assert hash_password("s3cret", salt=base64.b64decode(salt),
                         iterations=int(iterations)) == digest


def test_broker_setup_keeps_secrets_private_and_refuses_to_overwrite(tmp_path: Path) -> None:
    files = setup(tmp_path / "broker", port=18883)
    for secret in (files.passwd, files.ca_key, files.server_key, files.platform_password):
        assert _mode(secret) == 0o600, secret
    assert _mode(files.root) == 0o750
    assert files.passwd.read_text().startswith(f"{PLATFORM_USER}:$7$")
    with pytest.raises(BrokerSetupError, match="already holds"):
        setup(tmp_path / "broker", port=18883)         # the CA in use is never replaced


@pytest.mark.parametrize("gateway_id", ["#", "+", "gw/other", "", "a" * 65, PLATFORM_USER])
def test_broker_user_refuses_a_gateway_id_that_is_not_one_topic_level(
        tmp_path: Path, gateway_id: str) -> None:
    """A user name with '#' or '/' would become a wildcard or extra level in the ACL's %u
    patterns; the platform's own name would give a gateway the platform's rights."""
    files = setup(tmp_path / "broker", port=18883)
    before = files.passwd.read_text()
    with pytest.raises(BrokerSetupError):
        add_gateway(files.root, gateway_id)
    assert files.passwd.read_text() == before
    add_gateway(files.root, "gw-ok")                      # the honest path still works


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blegw_platform", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_broker_user_cli_writes_a_private_password_file_and_rotates(tmp_path: Path) -> None:
    assert _cli("broker-setup", "--dir", str(tmp_path / "b"), "--port", "18883").returncode == 0
    out = tmp_path / "gw" / "mqtt.password"
    first = _cli("broker-user", "--dir", str(tmp_path / "b"), "--gateway", "gw-1",
                 "--password-file", str(out))
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""                              # not printed when written to a file
    assert _mode(out) == 0o600
    old = out.read_text()
    printed = _cli("broker-user", "--dir", str(tmp_path / "b"), "--gateway", "gw-1")
    assert printed.returncode == 0 and printed.stdout.strip() not in ("", old.strip())
    users = (tmp_path / "b" / "passwd").read_text()
    assert users.count("gw-1:") == 1                       # rotated, not duplicated
    removed = _cli("broker-user", "--dir", str(tmp_path / "b"), "--gateway", "gw-1", "--remove")
    assert removed.returncode == 0 and "gw-1:" not in (tmp_path / "b" / "passwd").read_text()
    refused = _cli("broker-user", "--dir", str(tmp_path / "b"), "--gateway", "#")
    assert refused.returncode == 1 and "gateway" in refused.stderr


def test_serve_refuses_a_password_file_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "platform.password"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    result = _cli("serve", "--state", str(tmp_path / "state"), "--broker",
                  "mqtts://127.0.0.1:1", "--mqtt-password-file", str(secret))
    assert result.returncode == 2
    assert "--mqtt-password-file" in result.stderr and "0644" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    secret.chmod(0o600)
    missing_ca = _cli("serve", "--state", str(tmp_path / "state"), "--broker",
                      "mqtts://127.0.0.1:1", "--mqtt-password-file", str(secret),
                      "--mqtt-ca", str(tmp_path / "nope.pem"))
    assert missing_ca.returncode == 2 and "tls_ca" in missing_ca.stderr


# -- the gateway's [mqtt] keys --------------------------------------------------------------

def _write_config(tmp_path: Path, mqtt: str) -> Path:
    path = tmp_path / "blegw.toml"
    path.write_text(f'[gateway]\nid = "gw-1"\n[mqtt]\n{mqtt}\n')
    return path


def test_gateway_password_file_gives_its_own_account(tmp_path: Path) -> None:
    (tmp_path / "mqtt.password").write_text("s3cret\n")
    (tmp_path / "mqtt.password").chmod(0o640)               # root:blegw 0640 is fine
    (tmp_path / "ca.pem").write_text("not read here\n")
    cfg = load_config(_write_config(tmp_path, 'url = "mqtts://broker.example:8883"\n'
                                              'password_file = "mqtt.password"\n'
                                              'tls_ca = "ca.pem"'), env={})
    assert (cfg.mqtt.username, cfg.mqtt.password) == ("gw-1", "s3cret")   # user = gateway id
    assert cfg.mqtt.ca == str(tmp_path / "ca.pem")          # relative to the file
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.example", 8883, True)
    assert "s3cret" not in repr(cfg) and "s3cret" not in repr(cfg.mqtt)


@pytest.mark.parametrize(("mqtt", "mode", "key"), [
    ('password_file = "mqtt.password"', 0o644, "mqtt.password_file"),
    ('password_file = "mqtt.password"', 0o660, "mqtt.password_file"),
    ('password_file = "missing"', 0o600, "mqtt.password_file"),
    ('password_file = "mqtt.password"\npassword = "x"', 0o600, "mqtt.password_file"),
    ('url = "mqtts://h"\ntls_ca = "missing.pem"', 0o600, "mqtt.tls_ca"),
    ('url = "mqtts://h"\ntls_cert = "mqtt.password"\ntls_key = "key.pem"', 0o600,
     "mqtt.tls_key"),
    ('url = "mqtts://h"\ntls_cert = "mqtt.password"', 0o600, "mqtt.tls_cert"),
    ('url = "mqtt://h"\ntls_ca = "mqtt.password"', 0o600, "mqtt.url"),
    ('url = "mqtt://gw-1:pw@h"', 0o600, "mqtt.url"),
    ('passwd = "x"', 0o600, "mqtt.passwd"),
])
def test_unsafe_or_missing_mqtt_files_stop_start_up_naming_the_key(
        tmp_path: Path, mqtt: str, mode: int, key: str) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    secret.chmod(mode)
    (tmp_path / "key.pem").write_text("key\n")
    (tmp_path / "key.pem").chmod(0o644)                     # a private key others can read
    with pytest.raises(ConfigError) as refused:
        load_config(_write_config(tmp_path, mqtt), env={})
    assert str(refused.value).startswith(key), refused.value
    assert "s3cret" not in str(refused.value)


def test_mqtt_environment_overrides(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-env\n")
    secret.chmod(0o600)
    cfg = parse_config({"gateway": {"id": "gw-1"}},
                       env={"BLEGW_MQTT_URL": "mqtt://b:1884",
                            "BLEGW_MQTT_PASSWORD_FILE": str(secret),
                            "BLEGW_MQTT_USERNAME": "gw-1"})
    assert (cfg.mqtt.url, cfg.mqtt.username, cfg.mqtt.password) == \
        ("mqtt://b:1884", "gw-1", "from-env")
    anonymous = parse_config({"gateway": {"id": "gw-1"}}, env={})
    assert (anonymous.mqtt.username, anonymous.mqtt.password) == (None, None)
