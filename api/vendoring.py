"""Browser files vendored from the npm registry: fetch a package's tarball, check it, read members.

Shared by the two maintainer scripts that refresh committed browser assets (GraphiQL's, in
api/graphiql/refresh.py, and the reference app's, in api/webapp/vendor.py). Serving never needs the
network: the files are committed, and tests check their hashes offline."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable

REGISTRY = "https://registry.npmjs.org"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
        return data


def sri(data: bytes, algorithm: str = "sha384") -> str:
    """A Subresource Integrity string ("sha384-<base64>"), the form npm lockfiles use as well (sha512)."""
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def tarball(package: str, version: str, *, integrity: str | None = None, url: str | None = None) -> tarfile.TarFile:
    """The package's tarball, checked against `integrity` (a lockfile's) or else the registry's own."""
    if url is None or integrity is None:
        meta = json.loads(_get(f"{REGISTRY}/{urllib.parse.quote(package, safe='@')}/{version}"))
        url = url or meta["dist"]["tarball"]
        integrity = integrity or meta["dist"]["integrity"]
    data = _get(url)
    algorithm, _, _expected = integrity.partition("-")
    if algorithm != "sha512" or sri(data, "sha512") != integrity:
        raise SystemExit(f"{package}@{version}: tarball does not match the integrity {algorithm} it should have")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def member(archive: tarfile.TarFile, path: str) -> bytes | None:
    try:
        handle = archive.extractfile(f"package/{path}")
    except KeyError:
        return None
    return handle.read() if handle else None


def refresh_or_check(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    refresh: Callable[[], None],
    problems: Callable[[], list[str]],
    ok: str,
) -> None:
    """The command line of every vendoring script: refresh from the registry (or, with --check,
    only verify the committed copies), print what is wrong and exit 1, or print `ok`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--check", action="store_true", help="verify the committed copies only")
    args = parser.parse_args(argv)
    if not args.check:
        refresh()
    wrong = problems()
    for line in wrong:
        print(line, file=sys.stderr)
    if wrong:
        raise SystemExit(1)
    print(ok)
