"""The platform's REST API (/api/v1/, OpenAPI at /api/schema/) over requests.

Only what the commands need: JSON calls, paginated lists, a streamed multipart upload and a
streamed download, each with a progress callback. Every refusal becomes an ApiError carrying the
API's one error shape ({"error": {"code", "message"}}) and the HTTP status.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter, Retry

from moecollab_cli import __version__

Progress = Callable[[int], None]  # bytes sent or received since the last call
CHUNK = 1024 * 1024


class ApiError(Exception):
    """The platform refused a call, or could not be reached; the message says which and why."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or ("unreachable" if status is None else "error")


class _TokenAuth(requests.auth.AuthBase):
    """DRF token authentication (set as auth, so a ~/.netrc entry can never replace it)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self.token}"
        return request


class _MultipartBody:
    """multipart/form-data read in chunks: files are streamed from disk, never joined in
    memory, and the exact length is known up front (so the server gets a Content-Length)."""

    def __init__(self, files: dict[str, Path], progress: Progress | None) -> None:
        self.boundary = uuid.uuid4().hex
        self.parts: list[bytes | Path] = []
        for name, path in files.items():
            self.parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                .encode())
            self.parts += [path, b"\r\n"]
        self.parts.append(f"--{self.boundary}--\r\n".encode())
        self.progress = progress
        self._chunks = self._iter()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in self.parts)

    def _iter(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open("rb") as f:
                while chunk := f.read(CHUNK):
                    if self.progress is not None:
                        self.progress(len(chunk))
                    yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def read(self, size: int = -1) -> bytes:
        return next(self._chunks, b"")


def _error_of(response: requests.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "error", (response.text.strip()[:300] or response.reason)
    hint = ""
    if response.status_code == 401:
        hint = "; log in again with `moecollab login`"
    return ApiError(f"{message} (HTTP {response.status_code} {code}){hint}",
                    status=response.status_code, code=code)


class Api:
    """One platform: its URL, and the token sent with every call when there is one."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = f"moecollab-cli/{__version__}"
        self.http.headers["Accept"] = "application/json"
        # A server closes idle keep-alive connections (gunicorn after 2 s): a GET that finds
        # its pooled connection reset is sent again. Nothing else is retried.
        retry = Retry(total=3, connect=3, read=2, status=0, backoff_factor=0.2,
                      allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False)
        self.http.mount(self.url + "/", HTTPAdapter(max_retries=retry))

    def endpoint(self, path: str) -> str:
        return f"{self.url}/api/v1/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, auth: bool = True, stream: bool = False,
                **kwargs: Any) -> requests.Response:
        token = _TokenAuth(self.token) if auth and self.token else None
        url = self.endpoint(path)
        try:
            # No redirects: a token is sent to this platform's URL only.
            response = self.http.request(method, url, auth=token, timeout=self.timeout,
                                         stream=stream, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 300:
            raise _error_of(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def post(self, path: str, body: dict | None = None, *, auth: bool = True) -> Any:
        response = self.request("POST", path, json=body or {}, auth=auth)
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def pages(self, path: str, **params: Any) -> Iterator[dict]:
        """Every item of a paginated list (PageNumberPagination: ?page=N, "next")."""
        page = 1
        while True:
            body = self.get(path, **params, page=page)
            yield from body["results"]
            if not body.get("next"):
                return
            page += 1

    def upload(self, path: str, files: dict[str, Path], *, progress: Progress | None = None
               ) -> Any:
        """POST files as multipart/form-data, streamed from disk."""
        body = _MultipartBody(files, progress)
        response = self.request("POST", path, data=body,
                                headers={"Content-Type": body.content_type,
                                         "Content-Length": str(len(body))})
        return response.json()

    def download(self, path: str, dest: Path, *, params: dict | None = None,
                 progress: Progress | None = None) -> str:
        """Stream a file to `dest` (via a temporary name, so no half file is left); its sha256."""
        response = self.request("GET", path, params=params, stream=True,
                                headers={"Accept": "*/*"})
        digest = hashlib.sha256()
        tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}-{dest.name}")
        try:
            with tmp.open("wb") as f:
                for chunk in response.iter_content(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    if progress is not None:
                        progress(len(chunk))
            os.replace(tmp, dest)
        except requests.RequestException as exc:
            raise ApiError(f"download from {self.url} broke off: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()
