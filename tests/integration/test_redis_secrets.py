"""Secrets are never printed (issue 15, build 3): a password-protected redis-server of this
test's own (a free port, a temporary directory), reached with wrong and right credentials;
no error message, log line or CLI output holds the password."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from driftrec.state import StateConfigError, StateUnavailable, open_state, redact, redact_url
from driftrec.state.redis import RedisStateStore

pytestmark = pytest.mark.integration

PASSWORD = "Zq7-secret-pw"  # noqa: S105 - the string every output is searched for
ACL_PASSWORD = "Acl-pw-9x"  # noqa: S105


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true: redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")
    d = tmp_path_factory.mktemp("redis-secured")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(d),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            PASSWORD,
            "--user",
            "app",
            "on",
            f">{ACL_PASSWORD}",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the test's redis-server did not start")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _no_secret(text: str) -> None:
    assert PASSWORD not in text and ACL_PASSWORD not in text, text


@pytest.mark.parametrize("userinfo", [":wrong-pw", "app:wrong-pw", "nobody:" + PASSWORD, ""])
def test_wrong_or_missing_credentials_are_named_and_not_printed(secured_redis, userinfo, caplog):
    # nobody:PASSWORD: the right password for a user that does not exist (the password is in
    # the URL, so it must not be echoed)
    url = f"redis://{userinfo + '@' if userinfo else ''}127.0.0.1:{secured_redis}/0"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StateConfigError) as ei:  # not an outage: not retried
        open_state(url)
    msg = str(ei.value)
    assert "refused the password/user" in msg and "credentials were refused" in msg, msg
    assert "scripts/services.sh" not in msg
    _no_secret(msg)
    _no_secret(caplog.text)
    if ":" in userinfo:
        assert ":***@" in msg


def test_right_credentials_work(secured_redis):
    for url in (
        f"redis://:{PASSWORD}@127.0.0.1:{secured_redis}/0",
        f"redis://app:{ACL_PASSWORD}@127.0.0.1:{secured_redis}/0?prefix=secrets-test",
    ):
        st = open_state(url)
        st.set_current("v1")
        assert st.current() == "v1"
        st.close()


def test_config_errors_do_not_print_the_password():
    with pytest.raises(StateConfigError) as ei:
        open_state(f"mongo://u:{PASSWORD}@h/0")
    _no_secret(str(ei.value))
    with pytest.raises(StateConfigError) as ei:
        RedisStateStore.from_url(f"redis://u:{PASSWORD}@h:1/0?prefix=a%20b", check=False)
    _no_secret(str(ei.value))
    assert "u:***@h" in str(ei.value)


def test_unreachable_server_does_not_print_the_password():
    port = _free_port()  # nothing listens there
    with pytest.raises(StateUnavailable) as ei:
        open_state(f"redis://app:{PASSWORD}@127.0.0.1:{port}/0")
    assert "cannot reach Redis" in str(ei.value)
    _no_secret(str(ei.value))


def test_cli_output_does_not_print_the_password(secured_redis):
    env = dict(os.environ, STATE_URL=f"redis://app:{PASSWORD}x@127.0.0.1:{secured_redis}/0")
    p = subprocess.run(
        [sys.executable, "-m", "driftrec.cli", "adapters", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "refused the password/user" in out, out
    _no_secret(out)


def test_redact_helpers():
    assert redact_url(f"redis://user:{PASSWORD}@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact(f"at rediss://:{PASSWORD}@h:1 and u:{PASSWORD}@h2") == "at rediss://:***@h:1 and u:***@h2"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("service", ["scorer", "learner"])
def test_refused_credentials_are_not_retried(secured_redis, service_env, service, tmp_path):
    """A wrong password is not an outage: the service says the credentials were refused
    and exits 2 at once, instead of backing off for SERVICE_RETRY_S (300 s)."""
    env = dict(
        service_env,
        STATE_URL=f"redis://app:wrong-{ACL_PASSWORD}@127.0.0.1:{secured_redis}/0",
        SERVICE_RETRY_S="300",
    )
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "driftrec.cli", service],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"still retrying after {time.monotonic() - t0:.0f} s: {str(exc.stderr)[-800:]}")
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"driftrec {service}: error: ") and "credentials were refused" in last, last
    assert "unreachable (attempt" not in p.stderr, p.stderr[-2000:]
    _no_secret(p.stdout + p.stderr)
