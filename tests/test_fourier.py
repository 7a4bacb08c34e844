"""FourierFeatures against the formulas of Tancik et al. (2020), entry by entry."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse, stats

from sknetk.fourier import FourierFeatures


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _brute_force(X, B):
    """``[cos(2 pi b_k . x), sin(2 pi b_k . x)]`` by explicit loops."""
    n, m = X.shape[0], B.shape[0]
    out = np.empty((n, 2 * m))
    for i in range(n):
        for k in range(m):
            phase = 2 * math.pi * sum(X[i, a] * B[k, a] for a in range(X.shape[1]))
            out[i, k] = math.cos(phase)
            out[i, m + k] = math.sin(phase)
    return out


@pytest.mark.parametrize("kind", ["gaussian", "positional", "basic"])
def test_transform_is_cos_then_sin_of_the_projection(rng, kind):
    """The output equals the brute-force feature map with the fitted B_."""
    X = rng.uniform(size=(6, 3))
    ff = FourierFeatures(n_components=5, kind=kind, scale=4.0, random_state=0)
    out = ff.fit_transform(X)
    assert_allclose(out, _brute_force(X, ff.B_), rtol=1e-12, atol=1e-12)


def test_positional_frequencies_follow_the_log_linear_formula():
    """Row ``a * m + j`` of B_ is ``scale ** (j / m)`` on axis ``a`` only."""
    m, d, scale = 6, 3, 10.0
    B = (
        FourierFeatures(n_components=m, kind="positional", scale=scale)
        .fit(np.zeros((1, d)))
        .B_
    )
    assert B.shape == (m * d, d)
    for a in range(d):
        for j in range(m):
            expected = np.zeros(d)
            expected[a] = scale ** (j / m)
            assert_allclose(B[a * m + j], expected, rtol=1e-15)


def test_basic_mapping_is_identity_frequencies(rng):
    """kind="basic": ``[cos(2 pi x), sin(2 pi x)]``, ignoring n_components."""
    X = rng.uniform(size=(5, 2))
    out = FourierFeatures(n_components=99, kind="basic").fit_transform(X)
    assert_allclose(out, np.hstack([np.cos(2 * np.pi * X), np.sin(2 * np.pi * X)]))


def test_gaussian_frequencies_have_standard_deviation_scale():
    """The entries of B_ pass a Kolmogorov-Smirnov test for N(0, scale^2)."""
    ff = FourierFeatures(n_components=3000, scale=2.5, random_state=0)
    B = ff.fit(np.zeros((1, 2))).B_
    assert B.shape == (3000, 2)
    assert stats.kstest(B.ravel() / 2.5, "norm").pvalue > 1e-3
    assert_allclose(B.std(), 2.5, rtol=0.03)


def test_gaussian_features_approximate_the_gaussian_kernel(rng):
    """``<g(x), g(x')> / m`` estimates ``exp(-2 pi^2 scale^2 |x - x'|^2)``."""
    X = rng.uniform(size=(8, 2)) * 0.4
    m, scale = 20_000, 1.5
    Z = FourierFeatures(n_components=m, scale=scale, random_state=1).fit_transform(X)
    sq = ((X[:, None] - X[None]) ** 2).sum(-1)
    expected = np.exp(-2 * np.pi**2 * scale**2 * sq)
    # Each entry averages m bounded terms: the error is about 1 / sqrt(m).
    assert np.max(np.abs(Z @ Z.T / m - expected)) < 5 / math.sqrt(m)


def test_random_state_controls_the_draw(rng):
    """The same seed gives the same B_; another seed a different one."""
    X = rng.normal(size=(3, 4))
    a = FourierFeatures(n_components=7, random_state=3).fit(X).B_
    b = FourierFeatures(n_components=7, random_state=3).fit(X).B_
    c = FourierFeatures(n_components=7, random_state=4).fit(X).B_
    assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kind", ["gaussian", "positional", "basic"])
@pytest.mark.parametrize(
    "dtype, expected",
    [(np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float64)],
)
def test_dtype_is_preserved(rng, kind, dtype, expected):
    """float32 stays float32 (B_ and output); integers become float64."""
    X = (rng.uniform(size=(4, 2)) * 10).astype(dtype)
    ff = FourierFeatures(n_components=3, kind=kind, random_state=0)
    out = ff.fit_transform(X)
    assert ff.B_.dtype == expected
    assert out.dtype == expected
    assert_allclose(
        out,
        _brute_force(X.astype(np.float64), ff.B_.astype(np.float64)),
        atol=1e-3 if expected == np.float32 else 1e-12,
    )


def test_feature_names_out(rng):
    """Names are the class-name prefix and the column index."""
    ff = FourierFeatures(n_components=2, kind="positional").fit(rng.normal(size=(3, 2)))
    assert_array_equal(
        ff.get_feature_names_out(),
        [f"fourierfeatures{i}" for i in range(8)],
    )


def test_set_output_pandas(rng):
    """set_output(transform="pandas") gives a DataFrame with the names and index."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        rng.uniform(size=(5, 2)), columns=["u", "v"], index=list("abcde")
    )
    ff = FourierFeatures(n_components=3, random_state=0).set_output(transform="pandas")
    out = ff.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert_array_equal(out.columns, ff.get_feature_names_out())
    assert_array_equal(out.index, frame.index)
    assert_array_equal(ff.feature_names_in_, ["u", "v"])
    assert_allclose(out.to_numpy(), _brute_force(frame.to_numpy(), ff.B_))


def test_sparse_input_equals_dense(rng):
    """Sparse input gives the dense result."""
    X = rng.uniform(size=(6, 4))
    X[X < 0.5] = 0
    ff = FourierFeatures(n_components=5, random_state=0).fit(X)
    assert_allclose(ff.transform(sparse.csr_matrix(X)), ff.transform(X))
    assert_allclose(
        FourierFeatures(n_components=5, random_state=0)
        .fit(sparse.csc_array(X))
        .transform(X),
        ff.transform(X),
    )


def test_wrong_number_of_features_raises(rng):
    """Transforming with a different number of features raises ValueError."""
    ff = FourierFeatures(n_components=3).fit(rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match="features"):
        ff.transform(rng.normal(size=(4, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_raises(bad):
    """NaN or infinity in X raises ValueError."""
    X = np.ones((3, 2))
    X[1, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        FourierFeatures().fit(X)
