"""The web console in real headless Chromium against the real gateway (auth on): sign-in, each
page, live updates through ``/ui/events`` (``/v1/events``' handler), role-dependent controls, forged cookies.

Each test writes a screenshot of its page to ``docs/images/console-<page>.png`` (1280×800).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from console_support import Console, screenshot
from playwright.sync_api import expect
from tests_support import model_doc, until

JOBS = "mnemos.cortex.testing"


def _submit(console: Console, role: str, function: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{console.url}/v1/jobs", headers={"Authorization": f"Bearer {console.keys[role]}"},
                          json={"function": function, **body}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_sign_in_and_the_models_page_lists_each_model_with_its_phase(console: Console, page_for: Any) -> None:
    page = page_for("admin")
    row = page.locator('tr[data-model="echo-console"]')
    # Ready once Serve reports its replica running (the relay controller reads Serve's counts every
    # 2 s): the page shows it as rendered or, when the counts arrive later, from a model.status event.
    expect(row.locator(".phase")).to_have_text("Ready", timeout=30_000)
    expect(row.locator(".replicas")).to_have_text("1 / 1", timeout=30_000)  # ready / desired, from Serve
    assert page.get_by_role("link", name="Keys & usage").is_visible()
    page.wait_for_selector("#live.on")  # the event stream is open
    screenshot(page, "models")

    changed = model_doc("echo-console", version="2")
    console.client.apply([changed])
    page.goto(f"{console.url}/ui/models/echo-console")
    assert "generation 1 → 2" in page.inner_text("main")
    diff = page.inner_text("pre.diff")
    assert "-  version: '1'" in diff and "+  version: '2'" in diff
    screenshot(page, "model")


def test_a_forged_cookie_gets_the_sign_in_page(console: Console, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        context.add_cookies([{"name": "mnemos_session", "value": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJldmUifQ.Zm9yZ2Vk",
                              "url": console.url}])  # fmt: skip
        page = context.new_page()
        response = page.goto(f"{console.url}/ui/jobs")
        assert response.status == 401
        assert page.get_by_label("API key").is_visible()
        assert page.get_by_role("button", name="Sign in").is_visible()
        # A wrong key is refused on the page, without echoing it.
        page.get_by_label("API key").fill("mk_0123456789abcdef_wrongsecret")
        page.get_by_role("button", name="Sign in").click()
        assert "Sign-in refused" in page.inner_text("[role=alert]")
        assert "wrongsecret" not in page.content()
        screenshot(page, "signin")
    finally:
        context.close()


def test_the_session_cookie_is_httponly_strict_and_sign_out_revokes_it(console: Console, page_for: Any) -> None:
    page = page_for("viewer")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mnemos_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert page.request.get(f"{console.url}/v1/whoami").status == 401  # the API is never sent it
    assert console.keys["viewer"] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    # Writes need the page's CSRF token: a form post without it is refused.
    refused = page.request.post(f"{console.url}/ui/jobs/job-x/cancel", form={"csrf": "guess"})
    assert refused.status == 403
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/signin")

    def replayed() -> httpx.Response:  # the copied cookie, used again
        return httpx.get(f"{console.url}/ui/models", cookies={"mnemos_session": cookie["value"]}, timeout=30)

    # revocations reach every replica within seconds
    stolen = until(replayed, "the cookie refused", ready=lambda r: r.status_code == 401, timeout=20, interval=0.5)
    assert "API key" in stolen.text


def test_a_job_submitted_through_the_api_appears_and_its_logs_arrive_live(console: Console, page_for: Any) -> None:
    page = page_for("developer")
    page.goto(f"{console.url}/ui/jobs")
    page.wait_for_selector("#live.on")
    job = _submit(console, "developer", "ticker", kwargs={"count": 6, "interval": 0.7, "text": "line"})
    row = page.locator(f'tr[data-job="{job["id"]}"]')
    row.wait_for()  # inserted live, no reload
    assert page.locator("#no-jobs").count() == 0
    expect(row.locator(".status")).to_have_text(re.compile("running|succeeded"), timeout=30_000)
    screenshot(page, "jobs")

    page.goto(f"{console.url}/ui/jobs/{job['id']}")
    page.wait_for_selector("#live.on")
    expect(page.locator("#logs")).to_contain_text("line 6/6", timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    logs = page.inner_text("#logs")
    assert [logs.count(f"line {i}/6") for i in range(1, 7)] == [1] * 6, logs  # each line once, none lost
    assert page.get_by_role("button", name="Cancel job").count() == 0  # a finished job cannot be cancelled
    screenshot(page, "job")


def test_a_job_page_shows_a_string_that_is_not_unicode_escaped(console: Console, page_for: Any) -> None:
    import os

    name = os.fsdecode(b"report-\xff.csv")  # how Python names a file whose name is not UTF-8
    job = console.client.jobs.submit(f"{JOBS}:fail", name, max_attempts=1)
    assert job.wait(timeout=120)["status"] == "failed"
    page = page_for("admin")
    response = page.goto(f"{console.url}/ui/jobs/{job.id}")
    assert response.status == 200  # was a 500: the page could not be encoded
    assert "report-\\udcff.csv" in page.inner_text("main")


def test_a_viewer_sees_no_cancel_button_and_no_logs(console: Console, page_for: Any) -> None:
    job = _submit(console, "admin", f"{JOBS}:sleep", args=[30])
    try:
        admin = page_for("admin")
        admin.goto(f"{console.url}/ui/jobs/{job['id']}")
        assert admin.get_by_role("button", name="Cancel job").is_visible()
        assert admin.locator("#logs").count() == 1
        viewer = page_for("viewer")
        viewer.goto(f"{console.url}/ui/jobs/{job['id']}")
        assert viewer.locator("#job-status").is_visible()
        assert viewer.get_by_role("button", name="Cancel job").count() == 0
        assert viewer.locator("#logs").count() == 0  # nor its logs: GET /v1/jobs/{id}/logs is 403 to viewers
        assert viewer.locator("#logs-hidden").is_visible()
        admin.get_by_role("button", name="Cancel job").click()
        expect(admin.locator("#job-status")).to_have_text("cancelled", timeout=30_000)
    finally:
        httpx.delete(f"{console.url}/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {console.keys['admin']}"},
                     timeout=30)  # fmt: skip


def test_a_pipeline_runs_graph_reaches_all_steps_succeeded(console: Console, page_for: Any, tmp_path: Path) -> None:
    steps = [
        {"name": "prepare", "call": f"{JOBS}:sleep", "params": {"seconds": 1.5, "value": [1, 2]}},
        {"name": "infer", "call": f"{JOBS}:sleep", "params": {"seconds": 1.5, "value": "x"}, "needs": ["prepare"]},
        {"name": "index", "call": f"{JOBS}:echo", "params": {"value": "y"}, "needs": ["infer"]},
    ]
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "console-demo"},
           "spec": {"steps": steps}}  # fmt: skip
    path = tmp_path / "console-demo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    handle = console.client.pipelines.run(path, progress=False, wait=False)
    run_id = handle.state()["id"]
    page = page_for("admin")
    page.goto(f"{console.url}/ui/runs/{run_id}")
    page.wait_for_selector("#live.on")
    for name in ("prepare", "infer", "index"):
        page.wait_for_selector(f'g[data-node="{name}"].status-succeeded', timeout=90_000)
    assert page.inner_text("#run-status") == "succeeded"
    assert [r.get_attribute("data-step") for r in page.locator("tr[data-step]").all()] == ["prepare", "infer", "index"]
    expect(page.locator('tr[data-step="prepare"] .duration')).to_have_text(re.compile(r"^\d+\.\d\d s$"))
    screenshot(page, "run")
    page.goto(f"{console.url}/ui/runs")
    row = page.locator(f'tr[data-run="{run_id}"]')
    assert "console-demo" in row.locator("td").nth(1).inner_text() and "{" not in row.inner_text()
    screenshot(page, "runs")
    page.goto(f"{console.url}/ui/lineage?id=run:{run_id}")
    assert page.locator("svg.graph g.node").count() >= 4
    screenshot(page, "lineage")


def test_keys_and_audit_pages(console: Console, page_for: Any) -> None:
    developer = {"Authorization": f"Bearer {console.keys['developer']}"}
    chat = {"model": "echo-console", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        httpx.post(f"{console.url}/v1/chat/completions", headers=developer, json=chat, timeout=30)
    admin = page_for("admin")
    row = admin.locator("table[aria-label='Usage per principal'] tr", has_text="developer-user")

    def requests() -> str:  # the page's count of the developer's requests
        admin.goto(f"{console.url}/ui/keys")
        return str(row.locator("td").nth(1).inner_text()) if row.count() else ""

    # usage reaches SOUL's ledger within a second or so (each request's, one by one)
    until(requests, "three requests on the keys page", ready=lambda count: count == "3", timeout=60, interval=1)
    assert row.locator("td").nth(1).inner_text() == "3"  # the ledger GET /v1/usage reads: three requests
    assert "viewer-user" in admin.inner_text("table[aria-label='Credentials']")
    screenshot(admin, "keys")
    admin.goto(f"{console.url}/ui/audit")
    assert "identity.created" in admin.inner_text("table")
    screenshot(admin, "audit")
    viewer = page_for("viewer")
    assert viewer.get_by_role("link", name="Keys & usage").count() == 0
    assert viewer.goto(f"{console.url}/ui/keys").status == 403


def test_a_deleted_model_is_marked_deleted_on_its_page(console: Console, page_for: Any) -> None:
    """Its page said nothing of the deletion: the last generation looked current."""
    console.client.apply([model_doc("echo-gone")])
    console.client.delete("Model", "echo-gone")
    page = page_for("admin")
    page.goto(f"{console.url}/ui/models/echo-gone")
    expect(page.locator(".phase-deleted")).to_have_text("Deleted")
    cells = page.locator('table[aria-label="Generations"] tbody tr').first.locator("td")
    deleted = console.client.history("Model", "echo-gone")[-1].metadata.deletion_timestamp
    assert deleted and cells.nth(2).inner_text() == deleted


def test_a_page_whose_key_is_revoked_goes_to_sign_in(console: Console, page_for: Any) -> None:
    """The live feed ends with ``event: revoked`` when the session's key is revoked; the page used to
    show "reconnecting…" for ever (each reconnect a 401). It now goes to the sign-in page."""
    from mnemos.soul import IdentityStore

    store = IdentityStore.from_settings(console.client.settings, console.client.engram)
    created = store.create_api_key("revoked-viewer", "viewer")
    console.keys["revoked-viewer"] = created.secret
    page = page_for("revoked-viewer")  # on /ui/models, its live feed open
    expect(page.locator("#live")).to_have_text("live")
    store.revoke(created.id)
    page.wait_for_url("**/ui/signin", timeout=20_000)
