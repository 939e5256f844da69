"""Where `moecollab login` keeps the platform URL and token: one JSON file, mode 0600."""
from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_DIR_ENV = "MOECOLLAB_CONFIG_DIR"  # overrides the per-user folder (tests, CI, containers)
TOKEN_ENV = "MOECOLLAB_TOKEN"  # a token to use instead of the stored one (also read by login)
URL_ENV = "MOECOLLAB_URL"  # the platform to talk to when --url is not given
CREDENTIALS_NAME = "credentials.json"


class ConfigError(Exception):
    """The stored credentials cannot be read or written; the message names the file."""


@dataclass
class Login:
    url: str  # the platform, e.g. http://127.0.0.1:8000 (no trailing slash)
    token: str  # DRF API token; sent as "Authorization: Token <token>" to `url` only
    username: str | None = None  # None when the token came from MOECOLLAB_TOKEN alone
    # GET /api/v1/platform/ at log-in: the backbone and size limits `inspect` checks against
    platform: dict | None = field(default=None)


def config_dir() -> Path:
    """MOECOLLAB_CONFIG_DIR, else the user's config folder (XDG on Linux, AppData on Windows)."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "moecollab"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "moecollab"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "moecollab"


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_NAME


def load_login() -> Login | None:
    """The stored log-in, or None when there is none."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; run `moecollab login` again") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("url",
                                                                                     "token")):
        raise ConfigError(f"{path} is not a moecollab credentials file; run `moecollab login` "
                          "again")
    return Login(url=data["url"], token=data["token"], username=data.get("username"),
                 platform=data.get("platform") if isinstance(data.get("platform"), dict)
                 else None)


def save_login(login: Login) -> Path:
    """Write the credentials file, readable by its owner only, atomically."""
    path = credentials_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        # Created with 0600 from the start: the token is never readable by others, not even
        # for the moment between writing and a chmod.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(asdict(login), f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
    return path


def delete_login() -> bool:
    """Remove the credentials file; False when there was none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
