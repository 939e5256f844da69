"""Contribute an expert and use the platform, through the REST API alone.

    python examples/api_quickstart.py --url http://127.0.0.1:8000 --domain news \
        --artifact examples/out/my-expert/ --text "Stocks fell sharply" --text "A late goal won it"

Steps: get an API token, create an expert for a domain, upload an artifact folder
(manifest.json + weights.safetensors, as `python manage.py train_expert` writes it), wait until
the platform has validated it and show the checks and metrics, then ask the production model to
classify a few texts. Only the standard library is used. The username and password come from
--username/--password or MOECOLLAB_USERNAME/MOECOLLAB_PASSWORD: use a contributor's account
(sign up at /signup/); the script says which role the account has.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

VALIDATION_DONE = {"awaiting_review", "approved", "invalid", "cancelled", "rejected",
                   "changes_requested"}


class ApiError(Exception):
    """The API refused a call; the message is its {"error": {...}} answer."""


def say(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - this script's output is for the person running it


def call(url: str, *, token: str | None = None, json_body: dict | None = None,
         files: dict[str, Path] | None = None) -> dict:
    """One API call: GET, or POST with a JSON body or multipart files. Returns the JSON answer."""
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = f"Token {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif files is not None:
        boundary = uuid.uuid4().hex
        parts = []
        for field, path in files.items():
            parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                          f'filename="{path.name}"\r\nContent-Type: application/octet-stream'
                          "\r\n\r\n").encode() + path.read_bytes() + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(url, data=data, headers=headers,
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            error = json.loads(body)["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = body[:300]
        raise ApiError(f"{request.method} {url} -> {exc.code} {message}") from None


def account_role(api: str, token: str) -> str:
    """'maintainer' or 'contributor': only maintainers may read the review queue."""
    try:
        call(f"{api}/review-queue/", token=token)
    except ApiError as exc:
        if " -> 403 " in str(exc):
            return "contributor"
        raise
    return "maintainer"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the platform")
    parser.add_argument("--username", default=os.environ.get("MOECOLLAB_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("MOECOLLAB_PASSWORD"))
    parser.add_argument("--domain", required=True, help="the domain the expert is for")
    parser.add_argument("--artifact", required=True, type=Path,
                        help="folder with manifest.json and weights.safetensors")
    parser.add_argument("--name", default=None, help="the expert's name (default: a new one)")
    parser.add_argument("--text", action="append", default=[], help="a text to classify")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for validation")
    args = parser.parse_args(argv)
    if not args.username or not args.password:
        parser.error("give --username and --password (or MOECOLLAB_USERNAME/PASSWORD)")
    api = args.url.rstrip("/") + "/api/v1"

    token = call(f"{api}/auth/token/",
                 json_body={"username": args.username, "password": args.password})["token"]
    role = account_role(api, token)
    say(f"logged in as {args.username} ({role})")
    if role == "maintainer":
        say("note: experts are contributors' work and maintainers review them; upload from a "
            "contributor account (sign up at /signup/) so someone else reviews it")

    name = args.name or f"{args.domain}-quickstart-{uuid.uuid4().hex[:6]}"
    expert = call(f"{api}/experts/", token=token, json_body={
        "domain": args.domain, "name": name,
        "description": "Uploaded by examples/api_quickstart.py"})
    say(f"created expert #{expert['id']} {expert['name']!r} for domain {expert['domain']}")

    version = call(f"{api}/experts/{expert['id']}/versions/", token=token, files={
        "manifest": args.artifact / "manifest.json",
        "weights": args.artifact / "weights.safetensors"})
    say(f"uploaded version {version['number']} ({version['size_bytes']} bytes); validating...")

    deadline = time.monotonic() + args.wait
    while version["status"] not in VALIDATION_DONE:
        if time.monotonic() > deadline:
            raise ApiError(f"validation did not finish within {args.wait:.0f}s")
        time.sleep(2)
        version = call(f"{api}/experts/{expert['id']}/versions/{version['number']}/",
                       token=token)
    say(f"validation finished: {version['status']}")
    for check in version["checks"]:
        say(f"  [{'ok' if check['ok'] else 'FAILED'}] {check['name']}: {check['message']}")
    for metric, value in sorted(version["metrics"].items()):
        say(f"  {metric} = {value}")
    if version["status"] == "invalid":
        say(f"the platform refused the artifact: {version['error']}")
        return 1

    if args.text:
        answer = call(f"{api}/predict/", json_body={"texts": args.text})
        say(f"predictions of production gating v{answer['gating_version']} "
            f"({answer['ms']:.0f} ms):")
        for text, prediction in zip(args.text, answer["predictions"], strict=True):
            experts = ", ".join(f"{e['name']} {e['weight']:.2f}" for e in prediction["experts"])
            say(f"  {text!r} -> {prediction['domain']}/{prediction['label']} "
                f"({prediction['confidence']:.2f}; experts: {experts})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiError as exc:
        sys.exit(f"error: {exc}")
