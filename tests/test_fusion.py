"""Table-driven tests of the fusion methods."""

from __future__ import annotations

import pytest

from domain.retrieval.fusion import fuse, ranks

DENSE = {"a": 0.9, "b": 0.5, "c": 0.1}
KEYWORD = {"b": 12.0, "d": 6.0}


@pytest.mark.parametrize(
    ("method", "alpha", "expected_order"),
    [
        ("RRF", 0.5, ["b", "a", "d", "c"]),  # b is in both legs
        ("RRF", 1.0, ["a", "b", "c", "d"]),  # dense only
        ("RRF", 0.0, ["b", "d", "a", "c"]),  # keyword only; a and c score 0 (stable order)
        ("RELATIVE_SCORE", 0.5, ["b", "a", "c", "d"]),  # each leg's minimum normalises to 0: c and d tie
        ("RELATIVE_SCORE", 0.9, ["a", "b", "c", "d"]),
        (
            "ZSCORE",
            0.5,
            ["b", "a", "c", "d"],
        ),  # c and d both sit at the floor of one leg and the bottom of the other
        ("ZSCORE", 0.0, ["b", "a", "c", "d"]),  # d is the keyword minimum, a and c get that same floor
    ],
)
def test_fusion_orders(method: str, alpha: float, expected_order: list[str]) -> None:
    fused = fuse(DENSE, KEYWORD, method=method, alpha=alpha)  # type: ignore[arg-type]
    assert sorted(fused, key=lambda k: -fused[k]) == expected_order


@pytest.mark.parametrize(
    ("method", "key", "expected"),
    [
        ("RRF", "b", 0.5 / 62 + 0.5 / 61),
        ("RRF", "d", 0.5 / 62),
        ("RELATIVE_SCORE", "a", 0.5 * 1.0 + 0.5 * 0.0),
        ("RELATIVE_SCORE", "b", 0.5 * 0.5 + 0.5 * 1.0),
        ("RELATIVE_SCORE", "c", 0.0),
    ],
)
def test_fusion_values(method: str, key: str, expected: float) -> None:
    assert fuse(DENSE, KEYWORD, method=method, alpha=0.5)[key] == pytest.approx(expected)  # type: ignore[arg-type]


def test_zscore_values_are_standardised() -> None:
    fused = fuse({"x": 1.0, "y": 3.0}, {}, method="ZSCORE", alpha=1.0)
    assert fused == {"x": pytest.approx(-1.0), "y": pytest.approx(1.0)}


@pytest.mark.parametrize("method", ["RRF", "RELATIVE_SCORE", "ZSCORE"])
def test_fusion_handles_empty_legs(method: str) -> None:
    assert fuse({}, {}, method=method, alpha=0.5) == {}  # type: ignore[arg-type]
    assert set(fuse({"a": 1.0}, {}, method=method, alpha=0.5)) == {"a"}  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["RELATIVE_SCORE", "ZSCORE"])
def test_score_fusion_treats_equal_scores_equally(method: str) -> None:
    fused = fuse({"a": 0.3, "b": 0.3}, {}, method=method, alpha=0.5)  # type: ignore[arg-type]
    assert fused["a"] == pytest.approx(fused["b"])


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_fusion_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        fuse(DENSE, KEYWORD, method="RRF", alpha=alpha)


def test_ranks_are_one_based_best_first() -> None:
    assert ranks({"a": 0.1, "b": 0.9, "c": 0.5}) == {"b": 1, "c": 2, "a": 3}


def test_learned_fusion_uses_the_shipped_weights_and_rewards_both_legs() -> None:
    from domain.retrieval.learned import FEATURES, features, shipped_weights

    weights = shipped_weights()
    assert len(weights) == len(FEATURES)
    fused = fuse(DENSE, KEYWORD, method="LEARNED", alpha=0.5)
    # b is second in dense and first in keyword: found by both legs, it leads
    assert max(fused, key=lambda k: fused[k]) == "b"
    # the score is exactly the weighted sum of the documented features
    row = features(DENSE, KEYWORD)["d"]
    assert fused["d"] == pytest.approx(sum(w * x for w, x in zip(weights, row, strict=True)))
