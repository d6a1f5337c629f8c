"""The reference app's files, offline: the vendored graphql-ws client hashes to its manifest and is
the lockfile's version, every module the page imports is served by ragql itself, and nothing in
the app points at another host (tests/browser/test_reference_app.py runs it in a browser)."""

from __future__ import annotations

import json
import re

import httpx

from api import webapp
from api.vendoring import sri
from api.webapp import vendor

# Static imports and re-exports at the start of a line (not the words inside a string).
_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'"]*?["']([^"']+)["']""", re.M)


def test_the_vendored_client_matches_its_manifest_and_lockfile() -> None:
    assert vendor.problems() == []
    manifest = json.loads(vendor.MANIFEST.read_text())
    assert manifest["versions"] == {"graphql-ws": vendor.locked("graphql-ws")["version"]}
    assert any(name.endswith("/dist/client.js") for name in manifest["files"])


def test_a_changed_vendored_file_is_reported(tmp_path, monkeypatch) -> None:
    copy = tmp_path / "vendor"
    copy.mkdir()
    manifest = json.loads(vendor.MANIFEST.read_text())
    for relative in manifest["files"]:
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (copy / relative).write_bytes((vendor.VENDOR_DIR / relative).read_bytes())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    client = next(name for name in manifest["files"] if name.endswith("/dist/client.js"))
    (copy / client).write_bytes((copy / client).read_bytes() + b"\n// tampered\n")
    monkeypatch.setattr(vendor, "VENDOR_DIR", copy)
    monkeypatch.setattr(vendor, "MANIFEST", copy / "manifest.json")
    assert vendor.problems() == [
        f"{client} hashes to {sri((copy / client).read_bytes())}, the manifest says {manifest['files'][client]}"
    ]


def test_the_app_names_no_other_host() -> None:
    for name in ("index.html", "app.js", "style.css"):
        text = (webapp.STATIC_DIR / name).read_text()
        assert re.findall(r"(?:https?|wss?)://", text) == [], name


async def test_the_page_and_every_module_it_imports_are_served(app_client: httpx.AsyncClient) -> None:
    page = await app_client.get("/")
    assert page.status_code == 200
    assert 'data-environment="development"' in page.text
    pending = [f"{webapp.URL_PREFIX}/app.js"]
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        response = await app_client.get(path)
        assert response.status_code == 200, path
        assert "javascript" in response.headers["content-type"], path
        base = path.rsplit("/", 1)[0]
        for target in _IMPORT.findall(response.text):
            assert target.startswith("."), f"{path} imports {target!r}: a bare import needs a bundler"
            pending.append(str(httpx.URL(f"http://x{base}/").join(target).path))
    assert any(p.endswith("/dist/client.js") for p in seen) and any("/common-" in p for p in seen)
    css = await app_client.get(f"{webapp.URL_PREFIX}/style.css")
    assert css.status_code == 200
