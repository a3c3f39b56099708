"""The ``/ui`` dashboard in a real browser: Playwright driving Debian's chromium (installed
by ``interop/scripts/ensure-chromium.sh`` when missing; browser downloads are impossible
here) against a live worker. An operator enters a key, triggers a run from the page and
watches it complete, opens a run's timeline (an attempt that was retried, a sleep and a
hook wait as gaps, a live stream), resumes its hook from the form, cancels another run,
and activates a deployment — with nothing fetched from outside the worker and no console
errors (a Content-Security-Policy violation is one).

``COMPUTE_WORKER_SCREENSHOTS=1`` (``make screenshots``) also writes the README's
screenshots to docs/img/."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from compute_worker import start_compute_worker_server

from .engine_fixtures import ENGINE_KEY, ENGINE_SEED_KEYS, REPO, EngineApi

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCREENSHOTS = REPO / "docs" / "img"
WORKFLOWS = """
import os
from compute_worker import RetryableError, create_hook, get_writable, sleep, step, workflow

@step
async def fetch_order(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RetryableError("the order service was busy", retry_after=0.4)
    return {"items": 3, "price": 12.5}

@step
async def announce(text):
    out = get_writable("log")
    await out.write(text)
    return text

@step
async def charge(order):
    return order["items"] * order["price"]

@workflow
async def order_flow(marker, token):
    order = await fetch_order(marker)
    await announce("fetched the order; waiting a second, then for approval\\n")
    await sleep(1)
    approval = await create_hook(token=token)
    return {"charged": await charge(order), "approval": approval}

@step
async def add(a, b):
    return a + b

@workflow
async def adder(a, b):
    return await add(a, b)
"""


def _chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        subprocess.run([str(REPO / "interop" / "scripts" / "ensure-chromium.sh")], check=True)
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[EngineApi]:
    handle = await start_compute_worker_server(
        port=0, data_dir=tmp_path / "data", seed_api_keys=ENGINE_SEED_KEYS,
        worldcompute="local", ui=True,
    )  # fmt: skip
    try:
        async with EngineApi(handle.url) as api:
            yield api
    finally:
        await handle.close()


async def _open(browser: Browser, url: str) -> tuple[Page, list[str], list[str]]:
    page = await browser.new_page(viewport={"width": 1360, "height": 900})
    outside: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    response = await page.goto(f"{url}/ui/")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    await page.fill("#api-key", ENGINE_KEY)
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#key-state")).to_have_text("key set for this tab")
    return page, outside, problems


async def test_an_operator_triggers_watches_resumes_and_cancels_runs(
    browser: Browser, worker: EngineApi, tmp_path: Path
) -> None:
    first = await worker.deploy(WORKFLOWS, activate=False)
    await worker.deploy(WORKFLOWS)
    page, outside, problems = await _open(browser, worker.url)

    # trigger from the page, watch it complete
    await page.fill("#trigger-workflow", "adder")
    await page.fill("#trigger-input", "[2, 3]")
    await page.click("#trigger-form button[type=submit]")
    await page.wait_for_url("**/ui/#/runs/wrun_*")
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    await expect(page.locator("#run-output")).to_contain_text("5")
    await expect(page.locator(".lane-step .bar.s-completed")).to_have_count(1)
    added = page.url.rsplit("/", 1)[1]

    # the richer run: a retried attempt, a sleep, a hook wait, a stream
    token = f"approve-{uuid.uuid4().hex[:8]}"
    marker = str(tmp_path / "fetched-once")
    order = (await worker.trigger("order_flow", marker, token))["runId"]
    await page.goto(f"{worker.url}/ui/#/runs/{order}")
    form = page.locator("form.hook")
    await expect(form).to_have_count(1, timeout=20_000)
    await expect(form.locator("code.token")).to_have_text(token)
    await expect(page.locator(".lane-sleep .bar.gap")).to_have_count(1)
    await expect(page.locator(".lane-hook .bar.gap")).to_contain_text("waiting for hook")
    await expect(page.locator(".lane-step .bar.s-retrying")).to_have_count(1)
    await expect(page.locator("pre.stream")).to_contain_text("fetched the order")
    await form.locator("textarea").fill('{"approved": true, "by": "ops"}')
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    await expect(page.locator("#run-output")).to_contain_text("37.5")
    await expect(page.locator("#run-output")).to_contain_text('"ops"')
    await expect(page.locator(".lane-hook .bar.s-received")).to_have_count(1)
    await expect(page.locator("#events tr[data-event-type=hook_received]")).to_have_count(1)
    assert (await worker.run(order))["output"]["approval"] == {"approved": True, "by": "ops"}
    await _shoot(page, "run-timeline.png", tmp_path)

    # cancel a waiting run from its page
    waiting = (await worker.trigger("order_flow", marker, f"never-{uuid.uuid4().hex[:8]}"))["runId"]
    await page.goto(f"{worker.url}/ui/#/runs/{waiting}")
    await expect(page.locator("form.hook")).to_have_count(1, timeout=20_000)
    await page.click("#cancel-run")
    await expect(page.locator("#run-status")).to_have_text("cancelled", timeout=20_000)
    assert (await worker.run(waiting))["status"] == "cancelled"

    # the runs list: every run, filters, links to the run page
    await page.goto(f"{worker.url}/ui/#/runs")
    for run_id, status in ((added, "completed"), (order, "completed"), (waiting, "cancelled")):
        await expect(page.locator(f"tr[data-run-id='{run_id}']")).to_contain_text(status)
    await page.select_option("#filter-status", "cancelled")
    await expect(page.locator("#runs-body tr")).to_have_count(1)
    await expect(page.locator(f"tr[data-run-id='{waiting}']")).to_be_visible()
    await page.select_option("#filter-status", "")
    await expect(page.locator("#runs-body tr")).to_have_count(3)
    await page.set_viewport_size({"width": 1360, "height": 420})
    await _shoot(page, "runs.png", tmp_path)

    # deployments: kind, active pointer, pinned runs, activate
    await page.click("a[data-nav=deployments]")
    older_row = page.locator(f"tr[data-deployment-id='{first}']")
    await expect(older_row).to_contain_text("python")
    await older_row.locator("button.activate").click()
    await expect(older_row.locator(".badge.active")).to_be_visible()
    assert (await worker.http.get(f"/v1/deployments/{first}")).json()["active"] is True

    assert outside == []
    assert problems == []


async def test_without_a_valid_key_the_page_says_so(browser: Browser, worker: EngineApi) -> None:
    page = await browser.new_page()
    await page.goto(f"{worker.url}/ui/")
    await expect(page.locator("#notice")).to_contain_text("Enter an API key above")
    await page.fill("#api-key", "not-a-key-of-this-worker-at-all")
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("enter a valid API key")


async def test_the_dashboard_is_off_unless_asked_for(tmp_path: Path) -> None:
    handle = await start_compute_worker_server(port=0, data_dir=tmp_path / "data")
    try:
        async with EngineApi(handle.url) as api:
            assert (await api.http.get("/ui/")).status_code == 404
    finally:
        await handle.close()


async def _shoot(page: Page, name: str, tmp_path: Path) -> None:
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("COMPUTE_WORKER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / name, SCREENSHOTS / name)
