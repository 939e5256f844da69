"""Run gunicorn for the contract tests with every outgoing connection held to loopback.

Usage: python loopback_server.py APP --bind 127.0.0.1:PORT [gunicorn options]. Sockets opened
through Python (HTTP clients, Redis, the Hugging Face hub) raise PermissionError when they try
to reach an address that is not loopback, so a test can never depend on the outside world.
"""
from __future__ import annotations

import ipaddress
import socket
import sys

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _require_loopback(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets stay on this machine
    host, port = address[0], address[1]
    for *_, sockaddr in socket.getaddrinfo(host, port, sock.family):
        if not ipaddress.ip_address(sockaddr[0].split("%")[0]).is_loopback:
            raise PermissionError(f"the contract-test server may not connect to {host}:{port}")


def _guarded_connect(self, address):
    _require_loopback(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _require_loopback(self, address)
    return _connect_ex(self, address)


def main() -> None:
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
