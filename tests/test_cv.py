"""NTKRegressorCV / NTKClassifierCV against brute force and scikit-learn's search.

References: a leave-one-out loop refitting ``KernelRidge(kernel="precomputed")``
without each row; ``GridSearchCV`` over ``KernelRidge`` on the same kernels
(and over :class:`~sknetk.NTKRegressor` / ``NTKClassifier`` when available).
scikit-learn's common estimator checks run in ``test_common.py``.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import accuracy_score, make_scorer, r2_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.preprocessing import LabelBinarizer

from sknetk import NTKRegressor
from sknetk._calibration import loo_predictions as _loo_predictions
from sknetk._cv import NTKClassifierCV, NTKRegressorCV
from sknetk.dynamics import kernel_eigh
from sknetk.kernels import nngp_kernel, nngp_ntk_kernels, ntk_kernel

# The references below use absolute ridges on raw targets: the CV estimators
# with those settings (their defaults are relative ridges, normalised targets).
RegCV = functools.partial(NTKRegressorCV, alpha_scale="absolute", normalize_y=False)
ClfCV = functools.partial(NTKClassifierCV, alpha_scale="absolute")

ALPHAS = (0.01, 0.1, 1.0)
DEPTHS = (1, 2, 3)


def _data(n=24, d=4, n_targets=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    if n_targets:
        y = np.column_stack([y] + [np.cos(X[:, j]) for j in range(n_targets - 1)])
    return X, y


def _ridge(alpha, K, alpha_scale, w):
    if alpha_scale == "absolute":
        return alpha
    return alpha * np.average(np.diag(K), weights=w)


def _brute_force_loo(K, Y, ridge, w=None):
    """Refit KernelRidge without each row and predict that row."""
    n = K.shape[0]
    out = np.empty_like(Y, dtype=float)
    for i in range(n):
        keep = np.arange(n) != i
        model = KernelRidge(alpha=ridge, kernel="precomputed")
        model.fit(
            K[np.ix_(keep, keep)], Y[keep], sample_weight=None if w is None else w[keep]
        )
        out[i] = model.predict(K[i : i + 1, keep])[0]
    return out


def _neg_mse(Y, P, w):
    sq = (Y - P) ** 2
    sq = sq if sq.ndim == 1 else sq.mean(axis=1)
    return -np.average(sq, weights=w)


# ---------------------------------------------------------------------------
# Exact leave-one-out
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("multi", [False, True])
def test_loo_predictions_equal_brute_force(weighted, multi):
    """The eigendecomposition identity gives every refit-without-row prediction."""
    X, y = _data(n_targets=3 if multi else None)
    K = ntk_kernel(X, depth=2)
    Y = y if multi else y[:, None]
    w = None
    positive = None
    if weighted:
        w = np.random.default_rng(1).uniform(0.2, 3.0, size=len(X))
        w[[3, 7]] = 0.0
        positive = w > 0
    evals, V = kernel_eigh(K, w)
    U = V if w is None else np.sqrt(w)[:, None] * V
    for ridge in (1e-3, 0.3, 10.0):
        loo, coef = _loo_predictions(evals, U, U.T @ Y, Y, ridge, K, positive)
        np.testing.assert_allclose(
            loo, _brute_force_loo(K, Y, ridge, w), rtol=1e-8, atol=1e-10
        )
        ref = KernelRidge(alpha=ridge, kernel="precomputed").fit(K, Y, sample_weight=w)
        np.testing.assert_allclose(coef, ref.dual_coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("alpha_scale", ["absolute", "mean_diag"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regressor_loo_scores_equal_brute_force(alpha_scale, weighted):
    """cv_results_ holds the brute-force LOO error of every (alpha, depth)."""
    X, y = _data(seed=2)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X)) if weighted else None
    model = RegCV(
        alphas=ALPHAS, depths=DEPTHS, alpha_scale=alpha_scale, bias_std=0.2
    ).fit(X, y, sample_weight=w)
    res = model.cv_results_
    assert len(res["params"]) == len(ALPHAS) * len(DEPTHS)
    stack = ntk_kernel(X, depth=max(DEPTHS), bias_std=0.2, all_depths=True)
    scores = []
    for params, score in zip(res["params"], res["mean_test_score"]):
        K = stack[params["depth"] - 1]
        ridge = _ridge(params["alpha"], K, alpha_scale, w)
        ref = _neg_mse(y, _brute_force_loo(K, y[:, None], ridge, w)[:, 0], w)
        assert score == pytest.approx(ref, rel=1e-8)
        scores.append(ref)
    best = int(np.argmax(scores))
    assert model.best_index_ == best
    assert model.best_params_ == res["params"][best]
    assert (model.alpha_relative_, model.depth_) == (
        res["params"][best]["alpha"],
        res["params"][best]["depth"],
    )
    assert model.best_score_ == pytest.approx(scores[best], rel=1e-8)
    assert res["rank_test_score"][best] == 1


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("multi", [False, True])
def test_regressor_loo_predictions_equal_brute_force(weighted, multi):
    """The LOO predictions the search scores are the refit-without-row ones.

    The default score (mean squared LOO residual) cannot tell ``y - r`` from
    ``y + r``; a scorer that records the predictions it is handed, and scores
    the signed residual, can. Each (alpha, depth) is checked against a loop
    that refits ``KernelRidge`` without each row.
    """
    X, y = _data(n=20, n_targets=2 if multi else None, seed=6)
    w = None
    if weighted:
        w = np.random.default_rng(6).uniform(0.5, 2.0, size=len(X))
        w[4] = 0.0  # a zero-weight row is predicted by the full model
    seen = []
    probe = np.random.default_rng(7).normal(size=y.shape)

    def signed_residual(y_true, y_pred, sample_weight=None):
        seen.append(np.array(y_pred, dtype=float, copy=True))
        per_row = np.reshape((y_true - y_pred) * probe, (len(y_true), -1)).sum(axis=1)
        return float(np.average(per_row, weights=sample_weight))

    model = RegCV(
        alphas=(0.01, 0.3),
        depths=(1, 3),
        bias_std=0.2,
        alpha_scale="mean_diag",
        scoring=make_scorer(signed_residual),
    )
    model.fit(X, y, sample_weight=w)
    res = model.cv_results_
    recorded = list(seen)
    assert len(recorded) == len(res["params"]) == 4
    stack = ntk_kernel(X, depth=3, bias_std=0.2, all_depths=True)
    Y = y.reshape(len(y), -1)
    matched = set()
    for params, score in zip(res["params"], res["mean_test_score"]):
        K = stack[params["depth"] - 1]
        ridge = _ridge(params["alpha"], K, "mean_diag", w)
        loo = _brute_force_loo(K, Y, ridge, w)
        if w is not None:  # the zero-weight row: the full model's prediction
            full = KernelRidge(alpha=ridge, kernel="precomputed").fit(
                K, Y, sample_weight=w
            )
            loo[4] = full.predict(K[4:5])[0]
        loo = loo.reshape(y.shape)
        # the recorded predictions of this candidate (search order may differ)
        errors = [np.max(np.abs(s - loo)) for s in recorded]
        k = int(np.argmin(errors))
        assert errors[k] <= 1e-8 * np.max(np.abs(y)), (params, errors)
        matched.add(k)
        ref = signed_residual(y, loo, w)
        assert score == pytest.approx(ref, rel=1e-8, abs=1e-12)
    assert matched == set(range(len(recorded)))


def test_regressor_predicts_with_refitted_best_model():
    """predict equals KernelRidge refitted with the chosen kernel and ridge."""
    X, y = _data(n=30, n_targets=2, seed=3)
    X_test = np.random.default_rng(3).normal(size=(7, X.shape[1]))
    model = RegCV(alphas=ALPHAS, depths=DEPTHS, alpha_scale="mean_diag")
    model.fit(X, y)
    K = ntk_kernel(X, depth=model.depth_)
    assert model.alpha_ == pytest.approx(model.alpha_relative_ * np.mean(np.diag(K)))
    ref = KernelRidge(alpha=model.alpha_, kernel="precomputed").fit(K, y)
    np.testing.assert_allclose(
        model.predict(X_test),
        ref.predict(ntk_kernel(X_test, X, depth=model.depth_)),
        rtol=1e-9,
        atol=1e-12,
    )
    np.testing.assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-8, atol=1e-12)


def test_loo_on_singular_kernel_is_finite():
    """Duplicated rows (a singular kernel) still give finite scores and models."""
    X, y = _data(n=12, seed=4)
    X = np.vstack([X, X[:4]])
    y = np.r_[y, y[:4] + 1.0]
    model = RegCV(alphas=(1e-8, 1e-2), depths=(1, 2)).fit(X, y)
    assert np.all(np.isfinite(model.cv_results_["mean_test_score"]))
    assert np.all(np.isfinite(model.predict(X)))


# ---------------------------------------------------------------------------
# Explicit splitters against GridSearchCV
# ---------------------------------------------------------------------------
def test_kfold_matches_grid_search_over_kernel_ridge():
    """cv=KFold gives GridSearchCV's fold scores and choice on the same kernels."""
    X, y = _data(n=40, seed=5)
    cv = KFold(5, shuffle=True, random_state=0)
    model = RegCV(alphas=ALPHAS, depths=DEPTHS, cv=cv).fit(X, y)
    res = model.cv_results_
    stack = ntk_kernel(X, depth=max(DEPTHS), all_depths=True)
    ref_scores = np.empty(len(res["params"]))
    for depth in DEPTHS:
        search = GridSearchCV(
            KernelRidge(kernel="precomputed"), {"alpha": list(ALPHAS)}, cv=cv
        )
        search.fit(stack[depth - 1], y)
        for alpha, score, split in zip(
            search.cv_results_["param_alpha"],
            search.cv_results_["mean_test_score"],
            search.cv_results_["split2_test_score"],
        ):
            i = res["params"].index({"alpha": alpha, "depth": depth})
            ref_scores[i] = score
            assert res["split2_test_score"][i] == pytest.approx(split, rel=1e-9)
    np.testing.assert_allclose(res["mean_test_score"], ref_scores, rtol=1e-9)
    assert model.best_index_ == int(np.argmax(ref_scores))
    assert "std_test_score" in res and "split4_test_score" in res


def test_kfold_matches_grid_search_over_ntk_regressor():
    """Same candidates, scores and choice as GridSearchCV(NTKRegressor())."""
    NTKRegressor = pytest.importorskip("sknetk._regression").NTKRegressor
    X, y = _data(n=40, seed=6)
    cv = KFold(4, shuffle=True, random_state=1)
    for alpha_scale in ("absolute", "mean_diag"):
        model = RegCV(alphas=ALPHAS, depths=DEPTHS, cv=cv, alpha_scale=alpha_scale).fit(
            X, y
        )
        search = GridSearchCV(
            NTKRegressor(alpha_scale=alpha_scale, normalize_y=False),
            {"alpha": list(ALPHAS), "depth": list(DEPTHS)},
            cv=cv,
        ).fit(X, y)
        assert model.cv_results_["params"] == search.cv_results_["params"]
        np.testing.assert_allclose(
            model.cv_results_["mean_test_score"],
            search.cv_results_["mean_test_score"],
            rtol=1e-8,
        )
        assert model.best_params_ == search.best_params_
        np.testing.assert_allclose(model.predict(X), search.predict(X), rtol=1e-8)


def test_classifier_splits_match_manual_one_vs_all():
    """Fold accuracies equal one-vs-all KernelRidge fitted per fold."""
    X, y = make_classification(
        n_samples=45, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    labels = np.array(["a", "b", "c"])[y]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    model = ClfCV(alphas=ALPHAS, depths=(1, 2), cv=cv).fit(X, labels)
    Y = LabelBinarizer(pos_label=1, neg_label=-1).fit_transform(labels)
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        K = ntk_kernel(X, depth=params["depth"])
        accs = []
        for train, test in cv.split(X, labels):
            kr = KernelRidge(alpha=params["alpha"], kernel="precomputed")
            kr.fit(K[np.ix_(train, train)], Y[train])
            pred = model.classes_[np.argmax(kr.predict(K[np.ix_(test, train)]), 1)]
            accs.append(accuracy_score(labels[test], pred))
        assert score == pytest.approx(np.mean(accs), rel=1e-12)
    assert set(model.predict(X)) <= set(model.classes_)


def test_classifier_loo_scores_equal_brute_force():
    """Binary LOO scores (default MSE on +-1 and accuracy) equal refit loops."""
    X, y = make_classification(n_samples=30, n_features=4, random_state=1)
    labels = np.where(y == 1, "yes", "no")
    Y = np.where(y == 1, 1.0, -1.0)[:, None]
    for scoring in (None, "accuracy"):
        model = ClfCV(alphas=ALPHAS, depths=(1, 2), scoring=scoring)
        model.fit(X, labels)
        for params, score in zip(
            model.cv_results_["params"], model.cv_results_["mean_test_score"]
        ):
            K = ntk_kernel(X, depth=params["depth"])
            loo = _brute_force_loo(K, Y, params["alpha"])[:, 0]
            if scoring is None:
                ref = -np.mean((Y[:, 0] - loo) ** 2)
            else:
                ref = np.mean(np.where(loo > 0, "yes", "no") == labels)
            assert score == pytest.approx(ref, rel=1e-9)
    assert model.decision_function(X).shape == (30,)
    assert list(model.classes_) == ["no", "yes"]


def test_kfold_classifier_matches_grid_search_over_ntk_classifier():
    """Same scores and choice as GridSearchCV(NTKClassifier()) when available."""
    NTKClassifier = pytest.importorskip("sknetk._classification").NTKClassifier
    X, y = make_classification(
        n_samples=40,
        n_features=4,
        n_classes=3,
        n_informative=3,
        n_redundant=0,
        random_state=2,
    )
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    model = ClfCV(alphas=ALPHAS, depths=(1, 2), cv=cv).fit(X, y)
    search = GridSearchCV(
        NTKClassifier(), {"alpha": list(ALPHAS), "depth": [1, 2]}, cv=cv
    ).fit(X, y)
    np.testing.assert_allclose(
        model.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"],
        rtol=1e-12,
    )
    assert model.best_params_ == search.best_params_
    np.testing.assert_array_equal(model.predict(X), search.predict(X))


# ---------------------------------------------------------------------------
# Searching activations and frozen layers
# ---------------------------------------------------------------------------
def test_frozen_layers_and_activation_search():
    """Frozen-layer and activation candidates score as their own kernels do."""
    X, y = _data(n=20, seed=7)
    model = RegCV(
        alphas=(0.1,),
        depths=(1, 2, 3),
        frozen_layers=[0, 2],
        activation=["relu", "erf"],
    ).fit(X, y)
    params = model.cv_results_["params"]
    # frozen_layers=2 needs depth >= 2: 2 activations x (3 + 2) pairs.
    assert len(params) == 10
    assert all(p["frozen_layers"] <= p["depth"] for p in params)
    for p, score in zip(params, model.cv_results_["mean_test_score"]):
        _, K = nngp_ntk_kernels(
            X,
            depth=p["depth"],
            activation=p["activation"],
            frozen_layers=p["frozen_layers"],
        )
        ref = _neg_mse(y, _brute_force_loo(K, y[:, None], 0.1)[:, 0], None)
        assert score == pytest.approx(ref, rel=1e-8)
    # Prediction uses the chosen kernel, frozen layers included (row blocks).
    best = model.best_params_
    _, K = nngp_ntk_kernels(
        X,
        depth=best["depth"],
        activation=best["activation"],
        frozen_layers=best["frozen_layers"],
    )
    _, Ks = nngp_ntk_kernels(
        X[:5],
        X,
        depth=best["depth"],
        activation=best["activation"],
        frozen_layers=best["frozen_layers"],
    )
    ref = KernelRidge(alpha=0.1, kernel="precomputed").fit(K, y).predict(Ks)
    np.testing.assert_allclose(model.predict(X[:5]), ref, rtol=1e-9, atol=1e-12)


def test_fully_frozen_network_is_the_nngp():
    """frozen_layers = depth scores exactly as kernel="nngp"."""
    X, y = _data(n=20, seed=8)
    frozen = RegCV(alphas=ALPHAS, depths=(2,), frozen_layers=2).fit(X, y)
    nngp = RegCV(alphas=ALPHAS, depths=(2,), kernel="nngp").fit(X, y)
    np.testing.assert_allclose(
        frozen.cv_results_["mean_test_score"],
        nngp.cv_results_["mean_test_score"],
        rtol=1e-10,
    )
    K = nngp_kernel(X, depth=2)
    np.testing.assert_allclose(frozen.predict(X), nngp.predict(X), rtol=1e-9)
    ref = KernelRidge(alpha=nngp.alpha_, kernel="precomputed").fit(K, y)
    np.testing.assert_allclose(nngp.predict(X), ref.predict(K), rtol=1e-9)


# ---------------------------------------------------------------------------
# Input handling and errors
# ---------------------------------------------------------------------------
def test_sparse_input_equals_dense():
    """Sparse X gives the dense result."""
    X, y = _data(n=20, seed=9)
    X[np.abs(X) < 0.5] = 0.0
    dense = RegCV(depths=(1, 2)).fit(X, y)
    sparse = RegCV(depths=(1, 2)).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(
        sparse.predict(sp.csr_matrix(X)), dense.predict(X), rtol=1e-12
    )


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(alphas=[0.0, 1.0]), "alphas must be finite and > 0"),
        (dict(alphas=[]), "alphas must be a non-empty"),
        (dict(depths=[0, 1]), "depths must be"),
        (dict(depths=[1], frozen_layers=[2, 3]), "exceeds every depth"),
        (dict(kernel="nngp", frozen_layers=1), 'kernel="ntk" only'),
        (dict(activation=["relu", "nope"]), "activation must be one of"),
        (dict(parameterization="standard"), "width"),
    ],
)
def test_invalid_grids_raise(params, message):
    """Invalid grids are refused at fit with a clear message."""
    X, y = _data(n=10)
    with pytest.raises(ValueError, match=message):
        RegCV(**params).fit(X, y)


def test_single_class_is_refused():
    """A classifier needs two classes."""
    X, _ = _data(n=10)
    with pytest.raises(ValueError, match="at least two classes"):
        ClfCV().fit(X, np.zeros(10))


def test_class_weight_balanced_equals_sample_weight():
    """class_weight="balanced" equals passing the balanced sample weights."""
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = make_classification(
        n_samples=30, n_features=4, weights=[0.7], random_state=3
    )
    a = ClfCV(depths=(1, 2), class_weight="balanced").fit(X, y)
    b = ClfCV(depths=(1, 2)).fit(
        X, y, sample_weight=compute_sample_weight("balanced", y)
    )
    np.testing.assert_allclose(
        a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"], rtol=1e-12
    )
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X))


# ---------------------------------------------------------------------------
# Kernel cache for plain grid searches (the estimators' ``memory``)
# ---------------------------------------------------------------------------
def _counting(monkeypatch):
    """Count the kernel computations made through ``sknetk._cache``."""
    import sknetk._cache as cache

    calls = []
    for name in ("ntk_kernel", "nngp_kernel", "nngp_ntk_kernels"):
        original = getattr(cache, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache, name, wrapper)
    return calls


def test_cached_kernel_computes_once(tmp_path, monkeypatch):
    """Same data and kernel parameters: computed once, then loaded."""
    from joblib import Memory

    from sknetk._cache import cached_kernel

    calls = _counting(monkeypatch)
    X, _ = _data(n=15)
    # (joblib stores Memory(Path) and Memory(str) in different sub-folders.)
    memory = Memory(str(tmp_path), verbose=0)
    K1 = cached_kernel(memory, X, depth=2, bias_std=0.1)
    K2 = cached_kernel(
        memory, np.asfortranarray(X), depth=2, bias_std=0.1, n_jobs=1, working_memory=1
    )
    K3 = cached_kernel(
        str(tmp_path),
        X.tolist(),
        depth=2,
        bias_std=0.1,
        activation="relu",
        activation_params={},
    )
    assert calls == ["ntk_kernel"]
    np.testing.assert_array_equal(K1, K2)
    np.testing.assert_array_equal(K1, K3)
    np.testing.assert_allclose(K1, ntk_kernel(X, depth=2, bias_std=0.1), rtol=1e-15)
    # Anything that changes the kernel is a new entry.
    cached_kernel(memory, X, depth=3, bias_std=0.1)
    cached_kernel(memory, X, depth=2, bias_std=0.2)
    cached_kernel(memory, X, X[:4], depth=2, bias_std=0.1)
    cached_kernel(memory, X, kernel="nngp", depth=2, bias_std=0.1)
    cached_kernel(memory, X, depth=2, bias_std=0.1, frozen_layers=1)
    cached_kernel(memory, X + 1e-12, depth=2, bias_std=0.1)
    assert calls == ["ntk_kernel"] * 3 + [
        "ntk_kernel",
        "nngp_kernel",
        "nngp_ntk_kernels",
        "ntk_kernel",
    ]
    _, frozen = nngp_ntk_kernels(X, depth=2, bias_std=0.1, frozen_layers=1)
    np.testing.assert_allclose(
        cached_kernel(memory, X, depth=2, bias_std=0.1, frozen_layers=1),
        frozen,
        rtol=1e-15,
    )
    assert len(calls) == 7


def test_cached_kernel_hits_are_read_only_memory_maps(tmp_path, monkeypatch):
    """A folder cache maps its files; compressed caches and copies still work."""
    from joblib import Memory

    from sknetk._cache import cached_kernel

    X, y = _data(n=12)
    expected = ntk_kernel(X, depth=2)
    for memory in (str(tmp_path / "plain"), Memory(tmp_path / "mem", verbose=0)):
        cached_kernel(memory, X, depth=2)
        hit = cached_kernel(memory, X, depth=2)
        assert isinstance(hit, np.memmap) and not hit.flags.writeable
        np.testing.assert_array_equal(hit, expected)
    # Compressed files cannot be mapped: loaded as ordinary arrays.
    compressed = Memory(tmp_path / "zip", compress=3, verbose=0)
    cached_kernel(compressed, X, depth=2)
    hit = cached_kernel(compressed, X, depth=2)
    assert not isinstance(hit, np.memmap)
    np.testing.assert_array_equal(hit, expected)
    # Estimators copy before writing: repeated fits on mapped kernels agree.
    calls = _counting(monkeypatch)
    folder = str(tmp_path / "estimator")
    fits = [NTKRegressor(alpha=0.1, depth=2, memory=folder).fit(X, y) for _ in range(3)]
    assert calls == ["ntk_kernel"]
    for model in fits[1:]:
        np.testing.assert_array_equal(model.dual_coef_, fits[0].dual_coef_)
        np.testing.assert_array_equal(model.predict(X[:5]), fits[0].predict(X[:5]))
    np.testing.assert_allclose(
        fits[0].predict(X[:5]),
        NTKRegressor(alpha=0.1, depth=2).fit(X, y).predict(X[:5]),
        rtol=1e-12,
    )


def test_cached_kernel_without_memory_always_computes(monkeypatch):
    """memory=None caches nothing."""
    from sknetk._cache import cached_kernel

    calls = _counting(monkeypatch)
    X, _ = _data(n=8)
    for _ in range(2):
        cached_kernel(None, X, depth=1)
    assert calls == ["ntk_kernel", "ntk_kernel"]
    with pytest.raises(ValueError, match="frozen_layers"):
        cached_kernel(None, X, kernel="nngp", frozen_layers=1)
    with pytest.raises(ValueError, match="depth"):
        cached_kernel(None, X, depth=0)


def test_non_numpy_namespace_path(monkeypatch):
    """The device code path (run here on array_api_strict) equals NumPy's."""
    xp = pytest.importorskip("array_api_strict")
    from sknetk import _cv

    X, y = _data(n=30, seed=10)
    w = np.random.default_rng(10).uniform(0.0, 2.0, size=30)
    w[3] = 0.0
    for cv in (None, KFold(3)):
        kw = dict(depths=(1, 2), frozen_layers=[0, 1], alpha_scale="mean_diag", cv=cv)
        ref = RegCV(**kw).fit(X, y, sample_weight=w)
        monkeypatch.setattr(_cv._BaseNTKCV, "_to_device", lambda self, X: xp.asarray(X))
        out = RegCV(**kw).fit(X, y, sample_weight=w)
        monkeypatch.undo()
        # The two kernel code paths differ by ~1e-9 on the diagonal.
        np.testing.assert_allclose(
            out.cv_results_["mean_test_score"],
            ref.cv_results_["mean_test_score"],
            rtol=1e-6,
        )
        assert out.best_params_ == ref.best_params_
        assert isinstance(out.dual_coef_, np.ndarray)
        np.testing.assert_allclose(out.predict(X), ref.predict(X), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------
# best_estimator_, names, defaults, subsets
# ---------------------------------------------------------------------------
def test_best_estimator_is_the_chosen_plain_model():
    """best_estimator_ is NTKRegressor with the chosen parameters, fitted on all
    rows; alpha_ is its ridge, alpha_relative_ the chosen entry of alphas;
    predict (with return_std) is the plain model's."""
    X, y = _data(seed=7)
    model = NTKRegressorCV(alphas=ALPHAS, depths=DEPTHS, bias_std=0.2).fit(X, y)
    best = model.best_estimator_
    assert isinstance(best, NTKRegressor)
    assert best.depth == model.depth_ and best.alpha == model.alpha_relative_
    assert model.alpha_relative_ == model.best_params_["alpha"]
    K = ntk_kernel(X, depth=model.depth_, bias_std=0.2)
    assert model.alpha_ == pytest.approx(model.alpha_relative_ * np.mean(np.diag(K)))
    assert best.alpha_ == model.alpha_
    ref = NTKRegressor(
        alpha=model.alpha_, depth=model.depth_, bias_std=0.2, normalize_y=True
    ).fit(X, y)
    mean, std = model.predict(X[:5], return_std=True)
    ref_mean, ref_std = ref.predict(X[:5], return_std=True)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10)
    np.testing.assert_allclose(std, ref_std, rtol=1e-10)
    with pytest.warns(FutureWarning, match="alpha_"):
        assert model.ridge_ == model.alpha_


def test_normalized_loo_equals_brute_force_on_standardized_targets():
    """normalize_y: LOO of kernel ridge on targets centred by the mean of the
    rows each refit sees (the left-out row excluded), scored in y's units."""
    X, y = _data(seed=8)
    model = NTKRegressorCV(alphas=ALPHAS, depths=(2,), alpha_scale="absolute").fit(X, y)
    K = ntk_kernel(X, depth=2)
    n = len(y)
    means = (y.sum() - y) / (n - 1)  # the mean without row i
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        loo = np.array(
            [
                _brute_force_loo(K, (y - means[i])[:, None], params["alpha"])[i, 0]
                + means[i]
                for i in range(n)
            ]
        )
        ref = -np.mean((y - loo) ** 2)
        assert score == pytest.approx(ref, rel=1e-8)


def test_classifier_best_estimator_and_probabilities():
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    model = NTKClassifierCV(alphas=ALPHAS, depths=(1, 2)).fit(X, y)
    from sknetk import NTKClassifier

    assert isinstance(model.best_estimator_, NTKClassifier)
    np.testing.assert_allclose(
        model.predict_proba(X), model.best_estimator_.predict_proba(X)
    )
    np.testing.assert_array_equal(model.predict(X), model.best_estimator_.predict(X))


def test_grid_edge_warning_only_at_the_edges():
    from sknetk.exceptions import GridEdgeWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X[:, 0] + 0.01 * rng.normal(size=30)  # nearly noise-free: tiny ridge
    with pytest.warns(GridEdgeWarning, match="smallest"):
        NTKRegressorCV(alphas=(1.0, 10.0), depths=(1,)).fit(X, y)
    y = rng.normal(size=30)  # pure noise: the largest ridge
    with pytest.warns(GridEdgeWarning, match="largest"):
        NTKRegressorCV(alphas=(1e-4, 1e-3), depths=(1,)).fit(X, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", GridEdgeWarning)
        model = NTKRegressorCV(depths=(1,)).fit(X, X[:, 0] + 0.3 * y)
    assert model.alpha_relative_ not in (1e-5, 100.0)


def test_search_on_a_subset_then_fit_on_all_rows():
    """Above max_search_samples the search runs on a stratified subset; the
    candidates' scores are those of the CV estimator run on that subset, and
    best_estimator_ sees every row."""
    X, y = make_classification(n_samples=80, n_features=4, random_state=1)
    model = NTKClassifierCV(
        alphas=ALPHAS, depths=(1, 2), max_search_samples=40, random_state=0
    ).fit(X, y)
    rows = model.search_indices_
    assert len(rows) == 40 and np.bincount(y[rows]).tolist() == [20, 20]
    on_subset = NTKClassifierCV(alphas=ALPHAS, depths=(1, 2)).fit(X[rows], y[rows])
    np.testing.assert_allclose(
        model.cv_results_["mean_test_score"],
        on_subset.cv_results_["mean_test_score"],
    )
    assert model.best_estimator_.X_fit_.shape == X.shape
    assert NTKClassifierCV(alphas=ALPHAS, depths=(1,)).fit(X, y).search_indices_ is None


def test_predict_passes_keyword_arguments_to_the_best_estimator():
    """return_cov and the latent/predictive choice reach NTKRegressor.predict."""
    X, y = _data(seed=9)
    model = NTKRegressorCV(alphas=ALPHAS, depths=(1, 2)).fit(X, y)
    for kwargs in (dict(return_cov=True), dict(return_std=True, latent=True)):
        got = model.predict(X[:4], **kwargs)
        ref = model.best_estimator_.predict(X[:4], **kwargs)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_normalize_y_scores_equal_refits_that_centre_their_own_targets(weighted):
    """With ``normalize_y`` the left-out row's target must not reach the mean
    that centres the training targets: the leave-one-out and k-fold scores
    equal those of NTKRegressor refitted on each training set."""
    rng = np.random.default_rng(3)
    n = 14
    X = rng.normal(size=(n, 3))
    y = X[:, 0] + 3.0 + 0.3 * rng.normal(size=n)
    sw = rng.uniform(0.5, 2.0, n) if weighted else None
    params = dict(alpha=0.1, depth=2, alpha_scale="absolute", normalize_y=True)

    def refit(train):
        w = None if sw is None else sw[train]
        return NTKRegressor(**params).fit(X[train], y[train], sample_weight=w)

    cv = NTKRegressorCV(alphas=[0.1], depths=[2], alpha_scale="absolute")
    cv.fit(X, y, sample_weight=sw)
    loo = np.array(
        [refit(np.arange(n) != i).predict(X[i : i + 1])[0] for i in range(n)]
    )
    np.testing.assert_allclose(
        cv.best_score_, -np.average((y - loo) ** 2, weights=sw), rtol=1e-10
    )
    folds = KFold(4)
    cv = NTKRegressorCV(alphas=[0.1], depths=[2], alpha_scale="absolute", cv=folds)
    cv.fit(X, y, sample_weight=sw)
    scores = [
        r2_score(
            y[test],
            refit(train).predict(X[test]),
            sample_weight=None if sw is None else sw[test],
        )
        for train, test in folds.split(X)
    ]
    np.testing.assert_allclose(cv.best_score_, np.mean(scores), rtol=1e-10)
