"""Where the token is kept, who can read it, and which platform it is sent to."""
from __future__ import annotations

import os
import stat

import pytest

from moecollab_cli.config import Login, config_dir, credentials_path, load_login, save_login
from moecollab_cli.output import CliError
from moecollab_cli.session import normalize_url, open_session


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MOECOLLAB_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("MOECOLLAB_TOKEN", raising=False)
    monkeypatch.delenv("MOECOLLAB_URL", raising=False)
    return tmp_path / "cfg"


def test_it_keeps_the_token_readable_by_its_owner_only_whatever_the_umask(private_config):
    old = os.umask(0)
    try:
        path = save_login(Login(url="http://127.0.0.1:8000", token="t0k", username="alice"))
    finally:
        os.umask(old)
    assert path == private_config / "credentials.json" == credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_login() == Login(url="http://127.0.0.1:8000", token="t0k", username="alice")
    assert [p.name for p in private_config.iterdir()] == ["credentials.json"]  # no temp file


def test_it_uses_the_xdg_folder_without_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("MOECOLLAB_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "moecollab"


def test_it_sends_the_stored_token_only_to_the_platform_that_issued_it(monkeypatch):
    save_login(Login(url="http://127.0.0.1:8000", token="t0k", username="alice"))
    assert open_session().api.token == "t0k"
    assert open_session("http://127.0.0.1:8000/").api.token == "t0k"
    other = open_session("https://elsewhere.example.org")
    assert other.api.token is None and other.username is None
    with pytest.raises(CliError, match="not logged in to https://elsewhere.example.org"):
        open_session("https://elsewhere.example.org", need_token=True)
    monkeypatch.setenv("MOECOLLAB_TOKEN", "from-env")
    assert open_session("https://elsewhere.example.org").api.token == "from-env"


def test_it_refuses_a_malformed_credentials_file(private_config):
    private_config.mkdir()
    (private_config / "credentials.json").write_text("[1, 2]")
    with pytest.raises(Exception, match="is not a moecollab credentials file"):
        load_login()


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host", "http://", "http://h/?q=1"])
def test_it_refuses_what_is_not_a_platform_url(url):
    with pytest.raises(CliError):
        normalize_url(url)
