"""Evidence-based model selection: ``cv="evidence"`` in the CV estimators.

Reference: the log density of ``y`` under ``N(0, s2 (K + alpha W^-1))``
computed directly by ``scipy.stats.multivariate_normal`` on the kernel from
:func:`~sknetk.kernels.ntk_kernel`, at the closed-form output scale
``s2 = y^T (K + alpha W^-1)^-1 y / n``, which is checked to be the maximum.
"""

import functools
import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from sknetk._cv import NTKClassifierCV, NTKRegressorCV, _log_evidence
from sknetk.dynamics import kernel_eigh
from sknetk.exceptions import GridEdgeWarning
from sknetk.kernels import nngp_kernel, ntk_kernel

ALPHAS = (0.01, 0.1, 1.0)
DEPTHS = (1, 2, 3)

EvidenceCV = functools.partial(
    NTKRegressorCV, cv="evidence", alphas=ALPHAS, depths=DEPTHS, bias_std=0.2
)


def _data(n=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    return X, y


def _direct(K, y, ridge, w=None):
    """``(log_ml, s2)`` from a dense covariance and scipy's normal density."""
    n = len(y)
    w = np.ones(n) if w is None else w
    C = K + np.diag(ridge / w)
    s2 = float(y @ np.linalg.solve(C, y)) / n
    return multivariate_normal(np.zeros(n), s2 * C).logpdf(y), s2


@pytest.mark.parametrize("weighted", [False, True])
def test_log_evidence_equals_the_normal_density(weighted):
    """The profiled log marginal likelihood and its scale, against scipy."""
    X, y = _data()
    K = ntk_kernel(X, depth=2, bias_std=0.2)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 3.0, size=len(y)) if weighted else None
    evals, V = kernel_eigh(K, w)
    U = V if w is None else np.sqrt(w)[:, None] * V
    Y = np.column_stack([y, np.cos(X[:, 2])])
    log_weights = 0.0 if w is None else float(np.sum(np.log(w)))
    for ridge in (1e-3, 0.1, 2.0):
        log_ml, scale = _log_evidence(evals, U.T @ Y, ridge, log_weights)
        for j in range(2):
            ref, s2 = _direct(K, Y[:, j], ridge, w)
            assert log_ml[j] == pytest.approx(ref, rel=1e-8)
            assert scale[j] == pytest.approx(s2, rel=1e-8)
            C = K + np.diag(ridge / (np.ones(len(y)) if w is None else w))
            for factor in (0.99, 1.01):  # s2 is the maximum
                other = multivariate_normal(np.zeros(len(y)), factor * s2 * C)
                assert other.logpdf(Y[:, j]) < ref


@pytest.mark.filterwarnings("ignore::sknetk.exceptions.GridEdgeWarning")
@pytest.mark.parametrize("alpha_scale", ["absolute", "mean_diag"])
@pytest.mark.parametrize("normalize_y", [False, True])
def test_regressor_evidence_scores_equal_direct_computation(alpha_scale, normalize_y):
    """Every candidate's score is the log density of the (normalised) targets."""
    X, y = _data(seed=2)
    model = EvidenceCV(alpha_scale=alpha_scale, normalize_y=normalize_y).fit(X, y)
    z = (y - y.mean()) / y.std() if normalize_y else y
    stack = ntk_kernel(X, depth=max(DEPTHS), bias_std=0.2, all_depths=True)
    res = model.cv_results_
    refs = []
    for params, score in zip(res["params"], res["mean_test_score"]):
        K = stack[params["depth"] - 1]
        ridge = params["alpha"] * (
            np.mean(np.diag(K)) if alpha_scale != "absolute" else 1
        )
        ref, s2 = _direct(K, z, ridge)
        assert score == pytest.approx(ref, rel=1e-8)
        refs.append((ref, s2))
    best = int(np.argmax([r for r, _ in refs]))
    assert model.best_index_ == best
    assert model.output_scale_ == pytest.approx([refs[best][1]], rel=1e-8)
    assert model.best_score_ == pytest.approx(refs[best][0], rel=1e-8)


def test_zero_weight_rows_leave_the_evidence():
    """A zero weight is infinite noise: the same as removing the row."""
    X, y = _data(seed=3)
    w = np.ones(len(y))
    w[[2, 7]] = 0.0
    w[5] = 2.5
    model = EvidenceCV(normalize_y=False).fit(X, y, sample_weight=w)
    keep = w > 0
    stack = ntk_kernel(X[keep], depth=max(DEPTHS), bias_std=0.2, all_depths=True)
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        K = stack[params["depth"] - 1]
        ridge = params["alpha"] * np.average(np.diag(K), weights=w[keep])
        ref, _ = _direct(K, y[keep], ridge, w[keep])
        assert score == pytest.approx(ref, rel=1e-8)


def test_classifier_evidence_sums_the_one_vs_all_columns():
    """Each one-vs-all column is a target; the score is their sum."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 3))
    labels = np.array(["a", "b", "c"])[np.argmax(X, axis=1)]
    model = NTKClassifierCV(
        cv="evidence", alphas=ALPHAS, depths=(1, 2), kernel="nngp"
    ).fit(X, labels)
    stack = nngp_kernel(X, depth=2, all_depths=True)
    Y = np.where(labels[:, None] == model.classes_[None, :], 1.0, -1.0)
    for params, score in zip(
        model.cv_results_["params"], model.cv_results_["mean_test_score"]
    ):
        K = stack[params["depth"] - 1]
        ridge = params["alpha"] * np.mean(np.diag(K))
        ref = sum(_direct(K, Y[:, j], ridge)[0] for j in range(3))
        assert score == pytest.approx(ref, rel=1e-8)
    assert model.predict_proba(X).shape == (30, 3)


def test_evidence_recovers_the_generating_prior():
    """Targets drawn from an NNGP prior plus noise: depth and noise recovered.

    The noise variance is 0.1 times the kernel's mean diagonal; the evidence
    picks that relative ridge (of a half-decade grid) and the prior's depth,
    and the output scale is the prior's amplitude (4.0) within 30%.
    """
    rng = np.random.default_rng(0)
    n = 300
    X = rng.normal(size=(n, 5))
    K = nngp_kernel(X, depth=3, bias_std=0.5)
    noise = 0.1 * np.mean(np.diag(K))
    C = 4.0 * (K + noise * np.eye(n))
    y = np.linalg.cholesky(C) @ rng.normal(size=n)
    model = NTKRegressorCV(
        cv="evidence",
        kernel="nngp",
        bias_std=0.5,
        depths=(1, 3, 6),
        alphas=(0.01, 0.03, 0.1, 0.3, 1.0),
        normalize_y=False,
    ).fit(X, y)
    assert model.depth_ == 3
    assert model.alpha_relative_ in (0.03, 0.1, 0.3)
    assert model.output_scale_[0] == pytest.approx(4.0, rel=0.3)


def test_evidence_refuses_a_scoring():
    X, y = _data()
    with pytest.raises(ValueError, match="scoring must be None"):
        EvidenceCV(scoring="r2").fit(X, y)


def test_evidence_warns_at_the_grid_edge():
    """Noise-free targets: the smallest ridge wins and a warning says so."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] - 0.5 * X[:, 1]
    with pytest.warns(GridEdgeWarning, match="smallest of alphas"):
        model = EvidenceCV(alphas=(0.1, 1.0, 10.0)).fit(X, y)
    assert model.alpha_relative_ == 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridEdgeWarning)
        EvidenceCV(alphas=(0.1,)).fit(X, y)  # one value: no edge to speak of


@pytest.mark.filterwarnings("ignore::sknetk.exceptions.GridEdgeWarning")
def test_evidence_equals_gaussian_process_regressor():
    """The chosen candidate's score is GaussianProcessRegressor's log marginal
    likelihood with ConstantKernel(s2, fixed) * NTK + WhiteKernel(s2 * ridge)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

    from sknetk.gaussian_process import NTK

    X, y = _data(seed=6)
    model = EvidenceCV(normalize_y=False, alpha_scale="absolute").fit(X, y)
    s2 = float(model.output_scale_[0])
    kernel = ConstantKernel(s2, "fixed") * NTK(
        weight_std=1.0,
        bias_std=0.2,
        depth=model.depth_,
        weight_std_bounds="fixed",
        bias_std_bounds="fixed",
    ) + WhiteKernel(s2 * model.alpha_, "fixed")
    gpr = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(X, y)
    assert model.best_score_ == pytest.approx(
        gpr.log_marginal_likelihood_value_, rel=1e-8
    )
