"""The trained recommendation model end to end, on real PostgreSQL and the real embedder: training
is deterministic and changes the lists; a like folds in at once, before the next training;
co-engagement is normalised and a dislike retracts it; a tenant with no feedback still gets
recommendations; a document with no factors is still reachable; a deleted document is never
recommended from the neighbour lists it is still in. Plus the model's pure parts
against the `implicit` library itself."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import text

from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.recommendations import factors, model
from domain.recommendations.model import ModelConfig
from domain.recommendations.training import TrainReport, train_tenant
from domain.retrieval.filters import Condition, MetadataFilter, compile_filter
from tests.conftest import catalogue, graphql_ok, tenant_client
from tests.test_recommendations import feedback, recommend, titles


def db_id(global_id: str) -> str:
    """The database id inside a GraphQL global id (base64 of "Document:<uuid>")."""
    return base64.b64decode(global_id).decode().split(":", 1)[1]


INGEST = "mutation($i: IngestDocumentsInput!) { ingestDocuments(input: $i) { documents { id } errors { code } } }"


@pytest.fixture
async def trained_tenant(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> AsyncIterator[tuple[Any, str, dict[str, dict[str, Any]]]]:
    async with tenant_client(pg_url, tmp_root, embedder) as (client, tenant_id):
        yield client, tenant_id, await catalogue(client)


def two_groups(films: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Two sets of six films, taken by title order, so genre and text do not explain them."""
    names = sorted(films)
    return names[0:60:10], names[5:65:10]


async def like_groups(client: Any, films: dict[str, dict[str, Any]], a: list[str], b: list[str]) -> None:
    """Eight users like five of group A's six films each, eight others five of B's."""
    for group, label in ((a, "a"), (b, "b")):
        for u in range(8):
            for title in group[: u % 6] + group[u % 6 + 1 :]:
                await feedback(client, f"{label}-{u}", films[title]["id"], "LIKE")


async def groups_liked_and_trained(
    db: Database, client: Any, tenant_id: str, films: dict[str, dict[str, Any]]
) -> tuple[list[str], list[str], TrainReport]:
    """The two groups liked (`like_groups`), then one training."""
    a, b = two_groups(films)
    await like_groups(client, films, a, b)
    return a, b, await train_tenant(db, tenant_id)


async def factors_of(db: Database, tenant_id: str, version: int) -> np.ndarray:
    async with db.session(tenant_id) as session:
        rows = await session.execute(
            text("SELECT factor FROM item_factors WHERE version = :v ORDER BY document_id"), {"v": version}
        )
        return np.stack([np.asarray(v.to_numpy()) for (v,) in rows.all()])


async def test_training_is_deterministic_and_changes_the_list(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, films = trained_tenant
    a, b = two_groups(films)
    await like_groups(client, films, a, b)
    await feedback(client, "probe", films[a[0]]["id"], "LIKE")
    await feedback(client, "probe", films[a[1]]["id"], "LIKE")
    before = await recommend(client, "probe", o={"strategy": "COLLABORATIVE"})
    assert "MODEL" not in before["sources"]

    first = await train_tenant(db, tenant_id)
    second = await train_tenant(db, tenant_id)
    assert (first.version, second.version) == (1, 2)
    assert first.events == second.events == 8 * 5 * 2 + 2
    assert np.array_equal(await factors_of(db, tenant_id, 1), await factors_of(db, tenant_id, 2))

    after = await recommend(client, "probe", o={"strategy": "COLLABORATIVE"})
    assert "MODEL" in after["sources"] and after["strategy"].startswith("collaborative: model")
    assert titles(after) != titles(before)
    assert set(titles(after)[:4]) == set(a[2:]), titles(after)
    reasons = [r for item in after["items"][:4] for r in item["reasons"]]
    assert any(r in (f"because you liked *{a[0]}*", f"because you liked *{a[1]}*") for r in reasons), reasons


async def test_a_like_counts_at_once_before_the_next_training(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, films = trained_tenant
    a, b, report = await groups_liked_and_trained(db, client, tenant_id, films)
    cold = await recommend(client, "late", o={"strategy": "COLLABORATIVE"})
    assert "MODEL" not in cold["sources"]  # no events: nothing to fold in

    await feedback(client, "late", films[b[0]]["id"], "LIKE")
    warm = await recommend(client, "late", o={"strategy": "COLLABORATIVE"})
    assert "MODEL" in warm["sources"]
    assert len(set(titles(warm)[:5]) & set(b[1:])) >= 4, titles(warm)
    # And switching taste moves the list the same way, still without training.
    for title in a[:3]:
        await feedback(client, "late", films[title]["id"], "LIKE")
    await feedback(client, "late", films[b[0]]["id"], "DISLIKE")
    switched = await recommend(client, "late", o={"strategy": "COLLABORATIVE"})
    assert set(titles(switched)[:3]) <= set(a[3:]), titles(switched)
    async with db.session(tenant_id) as session:
        versions = (await session.execute(text("SELECT max(version) FROM recs_models"))).scalar()
    assert versions == report.version  # no training happened in between


DELETE = "mutation($id: ID!) { deleteDocument(input: {id: $id}) { deletedId errors { code } } }"


async def neighbour_lists(db: Database, tenant_id: str, version: int) -> dict[str, list[str]]:
    async with db.session(tenant_id) as session:
        rows = await session.execute(
            text("SELECT item, neighbours, scores FROM item_neighbour_lists WHERE version = :v"), {"v": version}
        )
        lists = {}
        for item, neighbours, scores in rows.all():
            assert list(scores) == sorted(scores, reverse=True)  # each list is stored best first
            lists[str(item)] = [str(n) for n in neighbours]
        return lists


async def test_a_deleted_neighbour_is_never_recommended_and_a_deleted_item_takes_its_list(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, films = trained_tenant
    a, _, report = await groups_liked_and_trained(db, client, tenant_id, films)
    assert report.version is not None and report.neighbour_pairs > 0
    await feedback(client, "probe", films[a[0]]["id"], "LIKE")
    before = await recommend(client, "probe", o={"strategy": "COLLABORATIVE"})
    gone = titles(before)[0]
    assert gone in a[1:], titles(before)
    lists = await neighbour_lists(db, tenant_id, report.version)
    assert db_id(films[gone]["id"]) in lists[db_id(films[a[0]]["id"])]

    deleted = (await graphql_ok(client, DELETE, {"id": films[gone]["id"]}))["deleteDocument"]
    assert deleted["errors"] == []
    after = await recommend(client, "probe", o={"strategy": "COLLABORATIVE"})
    # Still in the seed's stored list until the next training, never in a response.
    lists = await neighbour_lists(db, tenant_id, report.version)
    assert db_id(films[gone]["id"]) in lists[db_id(films[a[0]]["id"])]
    assert db_id(films[gone]["id"]) not in lists  # its own list went with it
    assert gone not in titles(after) and len(after["items"]) == 10, titles(after)
    assert set(titles(after)[:3]) <= set(a[1:]) - {gone}, titles(after)


async def test_a_tenant_with_no_feedback_still_gets_recommendations(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, _ = trained_tenant
    report = await train_tenant(db, tenant_id)
    assert report.version is None and report.events == 0
    result = await recommend(client, "anyone")
    assert len(result["items"]) == 10 and result["sources"] == ["POPULAR"]
    assert all(item["reasons"] for item in result["items"])


async def test_a_document_with_no_events_is_reachable_by_its_content(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, films = trained_tenant
    a, _, _ = await groups_liked_and_trained(db, client, tenant_id, films)
    doc = {
        "title": "Lighthouse Keepers",
        "text": "Two lighthouse keepers on a storm-battered rock lose track of days, sanity and the supply boat.",
        "metadata": {"genre": "Drama"},
    }
    new = (await graphql_ok(client, INGEST, {"i": {"documents": [doc]}}))["ingestDocuments"]
    assert new["errors"] == []
    await feedback(client, "keeper-fan", films[a[0]]["id"], "LIKE")
    result = await recommend(client, "keeper-fan", c="lighthouse keepers alone on a rock in a storm")
    assert "MODEL" in result["sources"]
    assert "Lighthouse Keepers" in titles(result), titles(result)
    cold = next(item for item in result["items"] if item["document"]["title"] == "Lighthouse Keepers")
    assert "CONTEXT" in cold["sources"] and "MODEL" not in cold["sources"]  # it has no factors yet


async def test_co_engagement_is_normalised_and_a_dislike_retracts_it(
    db: Database, trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]]
) -> None:
    client, tenant_id, films = trained_tenant
    names = sorted(films)
    blockbuster, first, second, *others = names[::7]
    # Everyone likes the blockbuster; three people like `first` too, two of them also `second`.
    for u in range(10):
        await feedback(client, f"fan-{u}", films[blockbuster]["id"], "LIKE")
        await feedback(client, f"fan-{u}", films[others[u % len(others)]]["id"], "LIKE")
    for u, liked in enumerate(([first, second, blockbuster], [first, second, blockbuster], [first, blockbuster])):
        for title in liked:
            await feedback(client, f"pair-{u}", films[title]["id"], "LIKE")
    await feedback(client, "probe", films[first]["id"], "LIKE")
    result = await recommend(client, "probe", o={"strategy": "COLLABORATIVE"})
    # Raw counts would put the blockbuster first (3 shared users against 2).
    assert titles(result)[:2] == [second, blockbuster], titles(result)

    async def pair_users() -> int | None:
        async with db.session(tenant_id) as session:
            return (
                await session.execute(
                    text("SELECT users FROM co_engagement WHERE item_a = :a AND item_b = :b"),
                    {"a": db_id(films[first]["id"]), "b": db_id(films[second]["id"])},
                )
            ).scalar()

    async def likers(title: str) -> int:
        async with db.session(tenant_id) as session:
            sql = "SELECT likers FROM item_popularity WHERE document_id = :d"
            return int((await session.execute(text(sql), {"d": db_id(films[title]["id"])})).scalar_one())

    assert await pair_users() == 2 and await likers(second) == 2
    await feedback(client, "pair-0", films[second]["id"], "DISLIKE")
    assert await pair_users() == 1 and await likers(second) == 1
    await feedback(client, "pair-1", films[second]["id"], "RATING", rating=1.0)
    assert await pair_users() is None and await likers(second) == 0
    await feedback(client, "pair-1", films[second]["id"], "LIKE")  # liked again: counted again
    assert await pair_users() == 1 and await likers(second) == 1


def test_fold_in_is_the_als_user_step_of_the_implicit_library() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(3)
    dense = (rng.random((40, 30)) < 0.2) * rng.choice([1.0, 3.0, -2.0], size=(40, 30))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    config = ModelConfig()
    _, items = model.fit(user_items, config)
    reference = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization, alpha=1.0)
    reference.item_factors = items
    for u in (0, 7, 19):
        row = user_items[u]
        expected = reference.recalculate_user(u, row)
        got = model.fold_in(model.gram(items), items[row.indices], row.data.astype(np.float64), config.regularization)
        # implicit solves with a few conjugate-gradient steps; the fold-in solves exactly.
        assert np.allclose(got, expected, rtol=0.05, atol=0.02), (u, np.abs(got - expected).max())


def test_neighbours_are_cosine_at_half_damping_and_damp_popular_items_above() -> None:
    # Items 0 and 1 share both their likers; item 2 is liked by everyone.
    liked = sp.csr_matrix(np.array([[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=np.float32))
    a, b, s = model.neighbours(liked, ModelConfig(neighbour_damping=0.5, neighbour_shrink=0.0))
    scores = {(int(i), int(j)): float(x) for i, j, x in zip(a, b, s, strict=True)}
    assert scores[(0, 1)] == pytest.approx(1.0)  # cosine: identical liker sets
    assert scores[(0, 2)] == pytest.approx(2 / np.sqrt(2 * 5))
    damped = model.neighbours(liked, ModelConfig(neighbour_damping=0.8, neighbour_shrink=0.0))
    top_of_0 = damped[1][damped[0] == 0][0]
    assert top_of_0 == 1  # item 0's best neighbour is its twin, not the item everyone likes


@pytest.mark.parametrize("first_round", [256, 1])
async def test_a_filtered_request_gets_the_exact_best_scored_documents_that_pass(
    db: Database,
    trained_tenant: tuple[Any, str, dict[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    first_round: int,
) -> None:
    """The model's candidates under a metadata filter are the unfiltered exact order with the
    documents that fail the filter taken out: whole, in order, however selective the filter (with a
    first round of 1, the genre's films are found over several growing rounds)."""
    client, tenant_id, films = trained_tenant
    a, _b, report = await groups_liked_and_trained(db, client, tenant_id, films)
    monkeypatch.setattr(factors, "_FIRST_ROUND", first_round)
    genre_of = {uuid.UUID(db_id(f["id"])): f["genre"] for f in films.values()}
    liked = [uuid.UUID(db_id(films[t]["id"])) for t in a[:2]]
    async with db.connection(tenant_id) as conn:
        trained = await factors.loaded(conn, tenant_id, report.version, database=db.key)
        assert trained is not None
        user = factors.user_vector(trained, {doc: 1.0 for doc in liked})
        assert user is not None
        everything = factors.top_scored(trained, user, liked, len(trained.ids))
        # The genre with the fewest films among those the model knows: the most selective filter.
        known = [genre_of[doc] for doc in trained.ids]
        genre = min(set(known), key=known.count)
        flt = compile_filter(MetadataFilter(all=(Condition("genre", "EQ", genre),)), alias="d")
        for k in (1, 3, len(trained.ids)):
            got = await factors.nearest_filtered(conn, trained, user, flt, liked, k)
            assert got == [doc for doc in everything if genre_of[doc] == genre][:k]
        assert all(doc not in liked for doc in got)
