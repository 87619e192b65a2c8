"""The documentation: the MkDocs site builds with --strict, its generated references are complete,
and every relative link of README.md resolves to a file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# [text](target) and ![alt](target); the target up to whitespace or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with ``mkdocs build --strict`` (a broken link or a missing page fails it)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MNEMOS_HOME": str(tmp_path_factory.mktemp("docs-home"))}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _page(site: Path, uri: str) -> str:
    return (site / uri / "index.html").read_text()


def test_every_nav_page_is_built(site: Path) -> None:
    for uri in ("guides/quickstart", "guides/serving", "guides/jobs", "guides/pipelines", "guides/security",
                "guides/gitops", "guides/kubernetes", "guides/backups", "architecture", "benchmarks"):  # fmt: skip
        assert (site / uri / "index.html").is_file(), uri


def test_cli_reference_lists_every_command(site: Path) -> None:
    import typer

    from mnemos.cli import app

    root = typer.main.get_command(app)
    html = _page(site, "reference/cli")
    ctx = root.context_class(root, info_name="mnemos")
    for name in root.list_commands(ctx):
        assert f"mnemos {name}</code>" in html, name


def test_settings_reference_names_env_vars(site: Path) -> None:
    html = _page(site, "reference/settings")
    for var in ("MNEMOS_RELAY__PORT", "MNEMOS_ENGRAM__URI", "MNEMOS_CORTEX__JOURNAL_BATCH_MS"):
        assert var in html, var
    assert "relay.rateLimit.requestsPerSecond" in html


def test_error_reference_has_every_error(site: Path) -> None:
    import mnemos.errors as errors

    html = _page(site, "reference/errors")
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.MnemosError):
            assert f"<code>{name}</code>" in html, name


def test_schema_reference_has_every_kind(site: Path) -> None:
    from mnemos.genome.kinds import KINDS

    html = _page(site, "reference/schemas")
    for kind in KINDS:
        assert f'id="{kind.lower()}"' in html, kind


def test_openapi_reference_is_the_gateway(site: Path) -> None:
    spec = json.loads((site / "reference" / "openapi.json").read_text())
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "/v1/chat/completions" in _page(site, "reference/openapi")


def test_readme_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    targets = [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]
    assert targets, "README.md has no relative links"
    broken = [t for t in targets if not (REPO / t.split("#", 1)[0]).exists()]
    assert not broken, f"README.md links to missing files: {broken}"


def test_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) < 200
