"""The weighted ALS of `model.fit_weighted` (popularity-weighted missing entries), pure numpy: its
weights, that its user factors solve the equations it claims, that it is deterministic, and that
uniform weights still go to the `implicit` package."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from domain.recommendations import model
from domain.recommendations.model import ModelConfig


def _signals(seed: int = 5, users: int = 60, items: int = 40) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    # Item j is touched with probability falling in j, so popularity differs across items.
    touched = rng.random((users, items)) < np.linspace(0.5, 0.05, items)
    values = rng.choice([3.0, 1.4, -2.0], size=(users, items))
    return sp.csr_matrix((touched * values).astype(np.float32))


def test_missing_weights_grow_with_popularity_and_average_to_the_setting() -> None:
    signals = _signals()
    config = ModelConfig(missing_weight=0.5, missing_exponent=0.5)
    w = model.missing_weights(signals, config)
    touched = np.diff(signals.tocsc().indptr)
    assert w.mean() == pytest.approx(0.5)
    most, least = int(np.argmax(touched)), int(np.argmin(touched))
    assert w[most] > w[least]
    assert w[most] / w[least] == pytest.approx(np.sqrt((touched[most] + 1) / (touched[least] + 1)))
    flat = model.missing_weights(signals, replace(config, missing_weight=1.0, missing_exponent=0.0))
    assert np.allclose(flat, 1.0)


def test_weighted_user_factors_solve_the_weighted_normal_equations() -> None:
    signals = _signals()
    config = ModelConfig(factors=8, iterations=6, regularization=2.0, missing_weight=0.5, missing_exponent=0.5)
    users, items = model.fit_weighted(signals, config)
    w = model.missing_weights(signals, config)
    # The last step solved the items against these users; one more user step from those items
    # must land on users that score the same way, and it is exactly this system per user:
    # (Σ w_i y_i yᵢᵀ + λI + Σ_obs (|c| − w_i) y yᵀ) x = Σ_{c>0} c y.
    y = items.astype(np.float64)
    g = model.gram(y, w)
    for u in (0, 11, 42):
        row = signals[u]
        idx, c = row.indices, row.data.astype(np.float64)
        a = g + config.regularization * np.eye(8) + (y[idx].T * (np.abs(c) - w[idx])) @ y[idx]
        x = np.linalg.solve(a, np.where(c > 0, c, 0.0) @ y[idx])
        step = model._solve_rows(
            signals.astype(np.float64), y, g, np.ones(signals.shape[0]), w[signals.indices], config.regularization
        )
        assert np.allclose(step[u], x)
    assert users.shape == (60, 8) and items.shape == (40, 8)


def test_weighted_fit_is_deterministic_and_uniform_weights_use_implicit() -> None:
    signals = _signals()
    config = ModelConfig(factors=8, iterations=4, missing_weight=0.5, missing_exponent=0.5)
    first = model.fit(signals, config)
    again = model.fit(signals, config)
    assert np.array_equal(first[1], again[1])
    assert not config.uniform
    uniform = replace(config, missing_weight=1.0, missing_exponent=0.0)
    assert uniform.uniform and ModelConfig().uniform  # the default is plain implicit ALS
    from implicit.cpu.als import AlternatingLeastSquares

    reference = AlternatingLeastSquares(
        factors=8, regularization=uniform.regularization, alpha=1.0, iterations=4, random_state=uniform.seed
    )
    reference.fit(signals, show_progress=False)
    assert np.allclose(model.fit(signals, uniform)[1], np.asarray(reference.item_factors))


def test_weighted_fit_ranks_a_users_own_cluster_above_the_other() -> None:
    # Two groups of users, each touching only its own half of the items: after training, a user of
    # the first group scores the first half's unseen items, on average, well above the second half.
    rng = np.random.default_rng(1)
    dense = np.zeros((40, 20), dtype=np.float32)
    for u in range(40):
        half = range(0, 10) if u < 20 else range(10, 20)
        for i in half:
            if rng.random() < 0.5:
                dense[u, i] = 3.0
    signals = sp.csr_matrix(dense)
    config = ModelConfig(factors=4, iterations=8, regularization=1.0, missing_weight=0.5, missing_exponent=0.5)
    _, items = model.fit(signals, config)
    g = model.gram(items, model.missing_weights(signals, config))
    row = signals[0]
    x = model.fold_in(g, items[row.indices], row.data.astype(np.float64), config.regularization)
    scores = items.astype(np.float64) @ x
    unseen_own = [i for i in range(10) if dense[0, i] == 0]
    assert np.mean(scores[unseen_own]) > np.mean(scores[10:]) + 0.2
