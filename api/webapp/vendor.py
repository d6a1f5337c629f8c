"""Vendor the reference app's one dependency (the graphql-ws client) from its lockfile.

    python -m api.webapp.vendor           # fetch what api/webapp/package-lock.json pins
    python -m api.webapp.vendor --check   # only verify the committed copies (no network)

The tarball is checked against the lockfile's sha512 `integrity`; the browser build's ES modules
(the entry point and every module it imports, followed through relative imports) are written to
static/vendor/<package>@<version>/ with the package's licence, and MANIFEST records each file's
sha384. Tests (tests/test_webapp_assets.py) check, offline, that the committed files hash to the
manifest and that the manifest's versions are the lockfile's. A maintainer tool: serving the app
never needs the network.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from pathlib import Path

from api import vendoring
from api.vendoring import member, sri, tarball

HERE = Path(__file__).resolve().parent
LOCKFILE = HERE / "package-lock.json"
VENDOR_DIR = HERE / "static" / "vendor"
MANIFEST = VENDOR_DIR / "manifest.json"
# What the page imports of each package: its browser ES module entry points, inside the package.
ENTRY_POINTS = {"graphql-ws": ["dist/client.js"]}
LICENCES = ("LICENSE", "LICENSE.md")
_RELATIVE_IMPORT = re.compile(r"""(?:from|import)\s*['"](\.{1,2}/[^'"]+)['"]""")


def locked(package: str) -> dict[str, str]:
    """The lockfile's entry for a direct dependency: version, integrity, and resolved (the tarball URL)
    unless npm was told to omit it (omit-lockfile-registry-resolved): then the registry names it."""
    entry: dict[str, str] = json.loads(LOCKFILE.read_text())["packages"][f"node_modules/{package}"]
    return entry


def _closure(read: dict[str, bytes], entry: str, fetch: dict[str, bytes]) -> None:
    """`entry` and every module it reaches through relative imports (bare imports would need a
    bundler; none is allowed, and a test would catch one at load time in the browser)."""
    if entry in read:
        return
    if entry not in fetch:
        raise SystemExit(f"{entry}: not in the npm package")
    read[entry] = fetch[entry]
    for target in _RELATIVE_IMPORT.findall(fetch[entry].decode("utf-8")):
        _closure(read, posixpath.normpath(posixpath.join(posixpath.dirname(entry), target)), fetch)


def refresh() -> None:
    staged: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    for package, entries in ENTRY_POINTS.items():
        lock = locked(package)
        with tarball(package, lock["version"], integrity=lock["integrity"], url=lock.get("resolved")) as archive:
            files = {
                m.name.removeprefix("package/"): data
                for m in archive.getmembers()
                if m.isfile() and (data := member(archive, m.name.removeprefix("package/"))) is not None
            }
        modules: dict[str, bytes] = {}
        for entry in entries:
            _closure(modules, entry, files)
        for name in LICENCES:
            if name in files:
                modules[name] = files[name]
        for path, data in modules.items():
            staged[f"{package}@{lock['version']}/{path}"] = data
        versions[package] = lock["version"]
        print(f"  {package}@{lock['version']}: {len(modules)} file(s), tarball matches the lockfile's integrity")
    shutil.rmtree(VENDOR_DIR, ignore_errors=True)
    for relative, data in staged.items():
        target = VENDOR_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = {"versions": versions, "files": {relative: sri(data) for relative, data in sorted(staged.items())}}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(staged)} files and {MANIFEST.name} to {VENDOR_DIR}")


def problems() -> list[str]:
    """What is wrong with the committed copies: missing, changed, or not the lockfile's version."""
    if not MANIFEST.is_file():
        return [f"{MANIFEST} is missing: run `python -m api.webapp.vendor`"]
    manifest = json.loads(MANIFEST.read_text())
    out = []
    for package in ENTRY_POINTS:
        if manifest["versions"].get(package) != (version := locked(package)["version"]):
            out.append(f"{package}: vendored {manifest['versions'].get(package)}, the lockfile pins {version}")
    for relative, integrity in manifest["files"].items():
        file = VENDOR_DIR / relative
        if not file.is_file():
            out.append(f"{relative} is missing")
        elif (actual := sri(file.read_bytes())) != integrity:
            out.append(f"{relative} hashes to {actual}, the manifest says {integrity}")
    return out


def main(argv: list[str] | None = None) -> None:
    vendoring.refresh_or_check(
        argv,
        prog="python -m api.webapp.vendor",
        description=__doc__.split("\n")[0],
        refresh=refresh,
        problems=problems,
        ok="the reference app's vendored files match the manifest and the lockfile",
    )


if __name__ == "__main__":
    main()
