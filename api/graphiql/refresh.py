"""Fetch GraphiQL's files from the npm registry into api/graphiql/static/ and check their hashes.

    python -m api.graphiql.refresh           # download what the installed Strawberry's page loads
    python -m api.graphiql.refresh --check   # only verify the committed copies (no network)

Run it after upgrading strawberry-graphql, then commit api/graphiql/static/. Each tarball is
checked against the registry's sha512 `integrity`, and each file against the page's sha384 SRI;
nothing is written unless every file matches. A maintainer tool: it is the only part of ragql
that needs the network for GraphiQL.
"""

from __future__ import annotations

import shutil

from api import vendoring
from api.graphiql.assets import STATIC_DIR, Asset, manifest, problems, sri
from api.vendoring import member, tarball


def refresh() -> None:
    staged: dict[str, bytes] = {}
    by_package: dict[tuple[str, str], list[Asset]] = {}
    for asset in manifest():
        by_package.setdefault((asset.package, asset.version), []).append(asset)
    for (package, version), assets in by_package.items():
        with tarball(package, version) as archive:
            for asset in assets:
                data = member(archive, asset.path)
                if data is None:
                    raise SystemExit(f"{asset.relative}: not in the npm package")
                if sri(data) != asset.integrity:
                    raise SystemExit(f"{asset.relative}: hashes to {sri(data)}, the page expects {asset.integrity}")
                staged[asset.relative] = data
            licence = member(archive, "LICENSE")
            if licence is not None:
                staged[f"{package}@{version}/LICENSE"] = licence
        print(f"  {package}@{version}: {len(assets)} file(s) verified")
    shutil.rmtree(STATIC_DIR, ignore_errors=True)
    for relative, data in staged.items():
        target = STATIC_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    print(f"wrote {len(staged)} files to {STATIC_DIR}")


def main(argv: list[str] | None = None) -> None:
    vendoring.refresh_or_check(
        argv,
        prog="python -m api.graphiql.refresh",
        description=__doc__.split("\n")[0],
        refresh=refresh,
        problems=problems,
        ok=f"{len(manifest())} GraphiQL assets match the SRI hashes in Strawberry's page",
    )


if __name__ == "__main__":
    main()
