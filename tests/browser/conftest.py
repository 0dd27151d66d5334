"""Playwright for Python driving Debian's chromium (no browser download), against live_server.

Every page of every browser test is watched for Content-Security-Policy violations (the policy in
settings.py, docs/security.md): the `securitypolicyviolation` events and Chrome's "Refused to ..."
console messages. A test fails at teardown if any page it opened reported one.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it
# are synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# What every watched page reported during the current test (cleared by `no_csp_violations`).
CSP_VIOLATIONS: list[str] = []

_LISTEN = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__edumlopsCspViolation(
    `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile || e.documentURI}`
    + `:${e.lineNumber} (${e.sample || ""})`
  );
}, true);
"""


def _is_csp_message(text: str) -> bool:
    return "Content Security Policy" in text or "Refused to" in text


def _watch(context):
    """Record the CSP violations of every page the context opens; flush them before it closes."""

    def report(source, text: str) -> None:
        CSP_VIOLATIONS.append(f"{source['page'].url}: {text}")

    context.expose_binding("__edumlopsCspViolation", report)
    context.add_init_script(_LISTEN)

    def on_page(page) -> None:
        page.on(
            "console",
            lambda msg: (
                _is_csp_message(msg.text)
                and CSP_VIOLATIONS.append(f"{page.url}: console: {msg.text}")
            ),
        )

    context.on("page", on_page)
    close = context.close

    def flush_then_close(*args, **kwargs):
        for page in context.pages:
            if not page.is_closed():
                # one round trip: queued violation events reach the bindings first (a page in
                # the middle of a navigation has nothing left to flush)
                with contextlib.suppress(Exception):
                    page.evaluate("0")
        return close(*args, **kwargs)

    context.close = flush_then_close
    return context


@pytest.fixture(autouse=True)
def no_csp_violations():
    """Fail the test if any page it opened broke the Content-Security-Policy."""
    CSP_VIOLATIONS.clear()
    yield
    found = list(CSP_VIOLATIONS)
    CSP_VIOLATIONS.clear()
    assert not found, "Content-Security-Policy violations:\n" + "\n".join(found)


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module: Playwright's sync API runs on greenlets, and a Playwright left
    running past the browser tests would leave Django's connections in another context."""
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        pytest.fail("chromium is not installed: run `make test` (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        new_context = browser.new_context
        browser.new_context = lambda *args, **kwargs: _watch(new_context(*args, **kwargs))
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def real_worker(demo, test_database_url, ml_stores):
    """A Celery worker on Redis for this test, sharing this process's var dir (`ml_stores`: the
    same MLflow store, datasets and signing key). The module's `demo` fixture seeds first."""
    import redis

    from tests.conftest import clean_env
    from tests.workflows.conftest import Worker

    url = os.environ["REDIS_URL"]
    redis.Redis.from_url(url).flushdb()
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL=url,
        EDUMLOPS_VAR_DIR=str(ml_stores),
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    worker = Worker(env, ml_stores / "worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def wide_page(browser):
    """A wide window: the canvas sits between the palette and the side panel."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, base: str, username: str, password: str = "edumlops-demo") -> None:
    """Log in through the login page as one of the demo people."""
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
