"""While the app serves, what its start-up built is out of the cycle collector's scans
(api/heap.py); after shutdown it is collectable again."""

from __future__ import annotations

import gc
from pathlib import Path

from asgi_lifespan import LifespanManager

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder


async def test_start_up_objects_are_frozen_while_serving_and_released_after(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    gc.unfreeze()
    app = create_app(Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False), embedder=embedder)
    async with LifespanManager(app, startup_timeout=120):
        frozen = gc.get_freeze_count()
        # The app itself was alive at the freeze, so it is among the frozen objects.
        assert frozen > 10_000
        assert not any(o is app for o in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0
    assert any(o is app for o in gc.get_objects(generation=2))
