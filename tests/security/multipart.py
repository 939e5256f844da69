"""Raw multipart bodies: file names sent exactly as given, and bodies streamed piece by piece.

Django's test client strips directory parts from upload names and builds the whole body in
memory; an attacker's client does neither, so these tests write the bytes themselves.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

BOUNDARY = "----moecollab-security-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _field(name: str, value: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            f"{value}\r\n").encode()


def _file_head(name: str, filename: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode("utf-8", "surrogateescape")


def _end() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    """A whole multipart body; file names are written verbatim (no basename, no escaping)."""
    body = b"".join(_field(k, v) for k, v in fields.items())
    for name, (filename, content) in files.items():
        body += _file_head(name, filename) + content + b"\r\n"
    return body + _end()


def streamed_file_body(fields: dict[str, str], name: str, filename: str,
                       pieces: Iterable[bytes], size: int) -> tuple[Iterator[bytes], int]:
    """The pieces of a multipart body holding one file of `size` bytes, and its total length."""
    head = b"".join(_field(k, v) for k, v in fields.items()) + _file_head(name, filename)
    tail = b"\r\n" + _end()

    def gen() -> Iterator[bytes]:
        yield head
        yield from pieces
        yield tail

    return gen(), len(head) + size + len(tail)


class StreamedInput:
    """A wsgi.input that produces the body on demand, so the test never holds all of it."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size is None or size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._pieces)
            except StopIteration:
                break
        if size is None or size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size: int = -1) -> bytes:  # not used by the multipart parser
        return self.read(size)
