"""Browser end-to-end tests: Debian's headless Chromium, driven by Playwright, against a live
Django server on the test database; jobs run on a real Celery worker process.

Every page a test visits is kept as a PNG under test-artifacts/screenshots/<test>/.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from tests.helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `make browser`
SHOTS_DIR = REPO / "test-artifacts" / "screenshots"
# Nothing leaves the machine: no updates, sync, field trials or QUIC probes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]
ACTION_TIMEOUT_MS = 30_000  # one click, fill or page load on two busy cores
JOB_TIMEOUT_MS = 240_000  # a job on tiny data, worker start-up and model loading included


@pytest.fixture(scope="session")
def live_server() -> Iterator:
    """pytest-django's live server, on 127.0.0.1 and a free port instead of localhost."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def orm_beside_playwright(transactional_db, monkeypatch) -> None:
    """Playwright's sync API keeps an asyncio loop running in this thread, which Django's ORM
    takes for async code; the tests only call the ORM between browser calls, so allow it.
    Set after the database fixtures and undone before their teardown."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser(orm_beside_playwright) -> Iterator[Browser]:
    """A fresh Chromium per test: Playwright starts it on a new temporary user-data dir."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Visitor:
    """One person's browser session (own cookies) with a screenshot for each page they see."""

    name: str
    page: Page
    base_url: str
    shoot: Callable[[Page, str], Path]
    problems: list[str] = field(default_factory=list)

    def go(self, path: str, step: str) -> Page:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
        self.snap(step)
        return self.page

    def snap(self, step: str) -> Path:
        return self.shoot(self.page, f"{self.name}-{step}")


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


@pytest.fixture
def shots(request) -> Callable[[Page, str], Path]:
    """shoot(page, step) saves a full-page PNG named by test and step, numbered in order."""
    folder = SHOTS_DIR / _safe(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = 0

    def shoot(page: Page, step: str) -> Path:
        nonlocal count
        count += 1
        path = folder / f"{count:02d}-{_safe(step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot


@pytest.fixture
def visitor(browser, live_server, shots) -> Iterator[Callable[[str], Visitor]]:
    """visitor(name) opens a new browser context; at the end no page may have had a script
    error, a console error or a failed static file."""
    opened: list[Visitor] = []

    def open_visitor(name: str) -> Visitor:
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      locale="en-GB", timezone_id="UTC")
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        v = Visitor(name=name, page=page, base_url=live_server.url, shoot=shots)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                v.problems.append(f"console error on {page.url}: {msg.text}")

        def on_response(response: Response) -> None:
            # 304: the browser revalidated a file it already holds, which is no failure.
            if "/static/" in response.url and not response.ok and response.status != 304:
                v.problems.append(f"{response.url}: HTTP {response.status}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: v.problems.append(f"script error on {page.url}: {exc}"))
        page.on("response", on_response)
        opened.append(v)
        return v

    yield open_visitor
    for v in opened:
        v.page.context.close()
    problems = [p for v in opened for p in v.problems]
    assert not problems, "\n".join(problems)


def log_in(v: Visitor, username: str, password: str) -> None:
    """Log in through the log-in page, as a person would."""
    page = v.go("/login/", "login-form")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.locator(".account .who").filter(has_text=username).wait_for()
    v.snap("logged-in")
