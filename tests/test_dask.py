"""The dask back end on a two-process LocalCluster, against one process."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sknetk._classification import NTKClassifier  # noqa: E402
from sknetk._dask import (  # noqa: E402
    dask_kernel_matvec,
    dask_knm_gram,
    dask_knm_normal,
    dask_knm_rhs,
    n_dask_workers,
)
from sknetk._nystrom import (  # noqa: E402
    kernel_block_function,
    nystrom_fit,
    nystrom_predict,
)
from sknetk._regression import NTKRegressor  # noqa: E402
from sknetk.kernels import ntk_kernel  # noqa: E402

# Every test here starts or uses a dask cluster: slow, run by CI (the default
# `python -m pytest -q`), left out of the inner loop `-m "not slow"`.
pytestmark = pytest.mark.slow

KERNEL = dict(depth=2, bias_std=0.1)


@pytest.fixture(scope="module")
def client():
    """Two worker processes with one thread each, as a small real cluster."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        memory_limit="1GiB",
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    Y = np.c_[np.sin(X[:, 0]) + 0.1 * rng.normal(size=600), X[:, 1] * X[:, 2]]
    w = rng.uniform(0.5, 2.0, size=600)
    return X, Y, w


def kernel_fn():
    # one thread per block: the workers provide the parallelism
    return kernel_block_function("ntk", n_jobs=1, **KERNEL)


def test_cluster_has_two_workers(client):
    """The functions see the cluster of the current client."""
    assert n_dask_workers() == 2


def test_products_equal_dense(client, data):
    """Row-block reductions on the cluster equal the dense products."""
    X, Y, w = data
    C = X[::20]
    Xd = da.from_array(X, chunks=(130, 4))  # uneven last chunk
    K = ntk_kernel(X, C, **KERNEL)
    v = np.random.default_rng(1).normal(size=(C.shape[0], 2))
    np.testing.assert_allclose(
        dask_knm_rhs(Xd, Y, C, kernel_fn(), w), K.T @ (w[:, None] * Y), rtol=1e-12
    )
    np.testing.assert_allclose(
        dask_knm_normal(Xd, v[:, 0], C, kernel_fn()), K.T @ (K @ v[:, 0]), rtol=1e-12
    )
    np.testing.assert_allclose(
        dask_knm_gram(Xd, C, kernel_fn(), w), K.T @ (w[:, None] * K), rtol=1e-12
    )
    U = np.triu(np.random.default_rng(2).normal(size=(C.shape[0], C.shape[0])))
    np.testing.assert_allclose(
        dask_knm_gram(Xd, C, kernel_fn(), w, upper=U),
        (K @ U).T @ (w[:, None] * (K @ U)),
        rtol=1e-10,
    )


def test_kernel_matvec_is_lazy_dask_array(client, data):
    """K(X_dask, Y) @ V is a dask array with X's row chunks, equal to NumPy."""
    X, Y, _ = data
    Xd = da.from_array(X, chunks=(200, 4))
    KV = dask_kernel_matvec(Xd, X[:50], Y[:50], kernel_fn())
    assert isinstance(KV, da.Array)
    assert KV.chunks == ((200, 200, 200), (2,))
    np.testing.assert_allclose(
        KV.compute(), ntk_kernel(X, X[:50], **KERNEL) @ Y[:50], rtol=1e-12
    )


@pytest.mark.parametrize("strategy", ["cache", "gram", "stream"])
def test_nystrom_fit_on_cluster_equals_single_process(client, data, strategy):
    """Fit on dask arrays (X, y, weights) equals the in-process fit."""
    X, Y, w = data
    kwargs = dict(
        kernel_fn=kernel_fn(),
        n_centers=80,
        alpha=0.05,
        tol=1e-10,
        max_iter=200,
        random_state=0,
    )
    ref_centers, ref_coef, ref_iter, _ = nystrom_fit(X, Y, sample_weight=w, **kwargs)
    Xd = da.from_array(X, chunks=(150, 4))
    centers, coef, n_iter, info = nystrom_fit(
        Xd,
        da.from_array(Y, chunks=(100, 2)),
        sample_weight=da.from_array(w),
        strategy=strategy,
        **kwargs,
    )
    assert info["strategy"] == strategy
    assert isinstance(coef, np.ndarray)
    np.testing.assert_array_equal(centers, ref_centers)
    assert abs(n_iter - ref_iter) <= 1
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-7, atol=1e-9)
    pred = nystrom_predict(Xd, centers, coef, kernel_fn())
    assert isinstance(pred, da.Array) and pred.chunks[0] == Xd.chunks[0]
    np.testing.assert_allclose(
        pred.compute(),
        nystrom_predict(X, ref_centers, ref_coef, kernel_fn()),
        rtol=1e-7,
        atol=1e-9,
    )


def test_auto_strategy_counts_cluster_memory(client, data):
    """'auto' caches K_nm when it fits half the budget summed over workers."""
    X, Y, _ = data
    Xd = da.from_array(X, chunks=(150, 4))
    # K_nm: 600 x 100 x 8 B = 0.46 MiB; 0.5 MiB per worker x 2 workers / 2 fits
    kwargs = dict(kernel_fn=kernel_fn(), n_centers=100, alpha=0.1, random_state=0)
    assert (
        nystrom_fit(Xd, Y[:, 0], working_memory=0.5, **kwargs)[3]["strategy"] == "cache"
    )
    assert (
        nystrom_fit(Xd, Y[:, 0], working_memory=0.4, **kwargs)[3]["strategy"] == "gram"
    )


@pytest.mark.parametrize("solver", ["cholesky", "nystrom"])
def test_gridsearch_under_joblib_dask_backend(client, solver):
    """GridSearchCV runs its fits on the cluster with the joblib dask backend."""
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 3))
    y = np.sin(X[:, 0]) + 0.05 * rng.normal(size=120)
    grid = {"depth": [1, 2], "alpha": [0.01, 0.1]}
    estimator = NTKRegressor(n_jobs=1, solver=solver, n_centers=30, random_state=0)
    serial = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    with parallel_backend("dask"):
        parallel = GridSearchCV(estimator, grid, cv=3, n_jobs=-1).fit(X, y)
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"],
        serial.cv_results_["mean_test_score"],
        rtol=1e-10,
    )
    # joblib's batches of fit-and-score ran as tasks on the cluster
    prefixes = client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.task_prefixes)
    )
    assert any(p.startswith("batch_of__fit_and_score") for p in prefixes)


def test_estimators_accept_dask_arrays(client, data):
    """NTKRegressor/NTKClassifier fit on dask arrays; predict returns dask arrays."""
    X, Y, _ = data
    Xd = da.from_array(X, chunks=(150, 4))
    params = dict(
        depth=2,
        bias_std=0.1,
        alpha=0.05,
        n_centers=80,
        random_state=0,
        tol=1e-10,
        n_jobs=1,
    )
    model = NTKRegressor(**params).fit(Xd, Y)
    assert model.solver_ == "nystrom"
    ref = NTKRegressor(solver="nystrom", **params).fit(X, Y)
    pred = model.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(pred.compute(), ref.predict(X), rtol=1e-7, atol=1e-9)
    labels = np.array(["a", "b", "c"])[(Y[:, 0] > 0).astype(int) + (Y[:, 1] > 0)]
    clf = NTKClassifier(**params).fit(Xd, labels)
    clf_ref = NTKClassifier(solver="nystrom", **params).fit(X, labels)
    out = clf.predict(Xd)
    assert isinstance(out, da.Array)
    np.testing.assert_array_equal(out.compute(), clf_ref.predict(X))


def test_estimators_dask_weights_and_mean_diag(client, data):
    """Dask X, y and weights with alpha_scale='mean_diag' equal the NumPy fit."""
    X, Y, w = data
    params = dict(
        depth=2,
        bias_std=0.1,
        alpha=0.05,
        alpha_scale="mean_diag",
        n_centers=60,
        random_state=1,
        tol=1e-10,
        n_jobs=1,
        solver="nystrom",
    )
    Xd = da.from_array(X, chunks=(150, 4))
    model = NTKRegressor(**params).fit(
        Xd, da.from_array(Y[:, 0], chunks=150), sample_weight=da.from_array(w)
    )
    ref = NTKRegressor(**params).fit(X, Y[:, 0], sample_weight=w)
    assert model.alpha_ == pytest.approx(ref.alpha_, rel=1e-12)
    assert model.n_features_in_ == 4
    np.testing.assert_allclose(model.dual_coef_, ref.dual_coef_, rtol=1e-7, atol=1e-9)


def test_predict_dask_after_exact_fit(client, data):
    """A model fitted exactly on NumPy predicts dask arrays lazily, the same."""
    X, Y, _ = data
    model = NTKRegressor(solver="cholesky", alpha=0.1, n_jobs=1, **KERNEL)
    model.fit(X[:200], Y[:200])
    pred = model.predict(da.from_array(X, chunks=(250, 2)))  # chunked by columns too
    assert isinstance(pred, da.Array) and pred.chunks[0] == (250, 250, 100)
    np.testing.assert_allclose(pred.compute(), model.predict(X), rtol=1e-10)
    with pytest.raises(ValueError, match="expecting 4 features"):
        model.predict(da.from_array(X[:, :3]))


def test_estimators_dask_refusals(client, data):
    """Dask input with the exact solver, t, memory or NaN raises ValueError."""
    X, Y, _ = data
    Xd = da.from_array(X, chunks=(150, 4))
    with pytest.raises(ValueError, match='solver="cholesky" needs'):
        NTKRegressor(solver="cholesky").fit(Xd, Y)
    with pytest.raises(ValueError, match="finite t"):
        NTKRegressor(t=1.0).fit(Xd, Y)
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NTKClassifier().fit(da.from_array(bad, chunks=(150, 4)), Y[:, 0] > 0)
    model = NTKRegressor(n_centers=20, random_state=0).fit(Xd, Y)
    with pytest.raises(ValueError, match="return_std"):
        model.predict(Xd, return_std=True)
