"""No password in any message, whatever the URL holds: a password with a raw ``/`` (common
in generated passwords) or a space, next to a bad port, is masked on every path that
quotes STATE_URL (the settings, ``settings --check``, ``users forget``, ``adapters list``,
the scorer's start), and the message says how to percent-encode it."""

from __future__ import annotations

import pytest

from driftrec.app.checks import check_services
from driftrec.app.settings import VARS, Settings
from driftrec.cli import main
from driftrec.state import StateConfigError, open_state, redact, redact_url

SLASH = "redis://u:Zx9Secret/Q@127.0.0.1:16380/0"
SPACE = "redis://u:Zx9 Secret@127.0.0.1:99999/0"
SLASH_BAD_PORT = "redis://u:Zx9Secret/Q@127.0.0.1:99999/0"
URLS = (SLASH, SPACE, SLASH_BAD_PORT)


def clean(text: str) -> None:
    for fragment in ("Zx9", "Secret", "/Q@"):
        assert fragment not in text, text


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in VARS:
        monkeypatch.delenv(v.name, raising=False)


@pytest.mark.parametrize("url", URLS)
def test_redaction_does_not_parse_the_url(url: str) -> None:
    assert redact_url(url).startswith("redis://u:***@127.0.0.1:")
    clean(redact_url(url))
    clean(redact(f"STATE_URL={url!r}: bad port"))
    if " " not in url:  # unquoted in free text, a space ends the URL
        clean(redact(f"cannot reach {url} (and {url})"))


@pytest.mark.parametrize(
    "argv",
    [["scorer"], ["settings", "--check"], ["users", "forget", "someone"], ["adapters", "list"]],
    ids=["scorer", "settings-check", "users-forget", "adapters-list"],
)
@pytest.mark.parametrize("url", URLS)
def test_every_command_masks_the_password(
    url: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATE_URL", url)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "STATE_URL='redis://u:***@127.0.0.1:" in lines[0], err
    clean(err)
    if " " in url or "/Q@" in url:
        assert "percent-encode" in lines[0] and ("%2F" if "/Q@" in url else "%20") in lines[0], lines[0]


@pytest.mark.parametrize("url", URLS)
def test_the_flag_masks_the_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "forget", "someone", "--state", url]) == 2
    clean(capsys.readouterr().err)


@pytest.mark.parametrize("url", URLS)
def test_the_scorers_start_masks_the_password(url: str) -> None:
    """Past the settings (a Settings built in code), opening the store and checking the
    services say what is wrong without the password."""
    with pytest.raises(StateConfigError) as e:
        open_state(url)
    clean(str(e.value))
    assert "percent-encode" in str(e.value)
    for line in check_services(Settings(state_url=url, kafka_bootstrap="127.0.0.1:1")):
        clean(line)


def test_a_secret_that_is_not_a_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    key = next(v for v in VARS if v.name == "ARTIFACT_KEY")
    assert key.shown("Zx9Secret@0123456789abcdef") == "***"
    assert key.shown("Zx9Secret:x@0123456789abcdef") == "***"
