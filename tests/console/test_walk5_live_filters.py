"""Walk 5 of the console, in the browser: a filtered Jobs page (``/ui/jobs?queue=wraith``) listed
live every new job the caller may see, whatever its queue, status or owner, until the page was
reloaded; a new job now appears only where it matches the page's filters."""

from __future__ import annotations

from typing import Any

import httpx
from console_support import Console


def _submit(console: Console, role: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{console.url}/v1/jobs", headers={"Authorization": f"Bearer {console.keys[role]}"},
                          json={"function": "ticker", "kwargs": {"count": 1, "interval": 0.0}, **body},
                          timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_filtered_jobs_page_lists_live_only_the_jobs_its_filters_match(console: Console, page_for: Any) -> None:
    page = page_for("admin")
    page.goto(f"{console.url}/ui/jobs?queue=wraith")
    page.wait_for_selector("#live.on")
    elsewhere = _submit(console, "admin")  # the default queue: not this page's
    matching = _submit(console, "admin", queue="wraith")  # its events follow the other's on the stream
    page.locator(f'tr[data-job="{matching["id"]}"]').wait_for()
    assert page.locator(f'tr[data-job="{elsewhere["id"]}"]').count() == 0
    page.reload()  # as the page lists it when rendered
    assert page.locator(f'tr[data-job="{matching["id"]}"]').count() == 1
    assert page.locator(f'tr[data-job="{elsewhere["id"]}"]').count() == 0
