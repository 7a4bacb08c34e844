"""Bad input gets a clear error, and nothing is silently wrong."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import sparse
from sklearn.exceptions import NotFittedError

import sknetk._base
from sknetk._classification import NTKClassifier
from sknetk._regression import NTKRegressor

ESTIMATORS = [NTKRegressor, NTKClassifier]


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3))
    y = np.array([0, 1, 2] * 4)
    return X, y


@pytest.fixture(params=ESTIMATORS, ids=lambda c: c.__name__)
def Estimator(request):
    return request.param


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_raises(Estimator, data, bad):
    """NaN or infinity in X, at fit and at predict."""
    X, y = data
    X_bad = X.copy()
    X_bad[2, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        Estimator().fit(X_bad, y)
    model = Estimator().fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        model.predict(X_bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_raises(Estimator, data, bad):
    """NaN or infinity in y."""
    X, y = data
    y = y.astype(float)
    y[4] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        Estimator().fit(X, y)


def test_overflowing_X_raises_instead_of_nan(Estimator, data):
    """Rows so large that the kernel overflows float64 raise at fit and predict."""
    X, y = data
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="NaN or inf"):
        Estimator().fit(X * 1e200, y)
    model = Estimator().fit(X, y)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="too large"):
        model.predict(X * 1e200)


def test_empty_X_raises(Estimator):
    """Zero samples, or zero features."""
    with pytest.raises(ValueError, match="0 sample"):
        Estimator().fit(np.empty((0, 3)), np.empty(0))
    with pytest.raises(ValueError, match="0 feature"):
        Estimator().fit(np.empty((4, 0)), np.array([0, 1, 0, 1]))


def test_one_sample():
    """One sample: the regressor fits (see test_estimators); the classifier refuses."""
    X = np.array([[1.0, 2.0]])
    assert np.isfinite(NTKRegressor().fit(X, [3.0]).predict(X)).all()
    with pytest.raises(ValueError, match="at least two classes"):
        NTKClassifier().fit(X, ["a"])


def test_single_class_raises():
    """A classifier needs two classes."""
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="class"):
        NTKClassifier().fit(X, ["a"] * 5)


def test_continuous_target_to_classifier_raises(data):
    """A regression target given to the classifier."""
    X, _ = data
    with pytest.raises(ValueError, match="Unknown label type"):
        NTKClassifier().fit(X, np.linspace(0, 1, len(X)))


def test_wrong_number_of_features_at_predict(Estimator, data):
    """Predicting with another number of features."""
    X, y = data
    model = Estimator().fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        model.predict(X[:, :2])


def test_predict_before_fit(Estimator, data):
    """Predicting with an unfitted estimator."""
    with pytest.raises(NotFittedError):
        Estimator().predict(data[0])


def test_string_X_raises(Estimator, data):
    """Strings (or other non-numbers) in X."""
    X, y = data
    X_str = X.astype(object)
    X_str[0, 0] = "a"
    with pytest.raises(ValueError, match="could not convert string to float"):
        Estimator().fit(X_str, y)
    with pytest.raises(ValueError, match="could not convert string to float"):
        Estimator().fit(np.array([["a", "b"]] * len(y)), y)


def test_object_X_holding_numbers_is_accepted(Estimator, data):
    """An object array of numbers is converted, giving the float result."""
    X, y = data
    expected = Estimator().fit(X, y).predict(X)
    assert_allclose(Estimator().fit(X.astype(object), y).predict(X), expected)


def test_complex_and_3d_X_raise(Estimator, data):
    """Complex numbers and 3-D arrays."""
    X, y = data
    with pytest.raises(ValueError, match="[Cc]omplex"):
        Estimator().fit(X + 1j, y)
    with pytest.raises(ValueError, match="dim"):
        Estimator().fit(X[:, :, None], y)


def test_y_length_mismatch(Estimator, data):
    """A y whose length differs from X."""
    X, y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Estimator().fit(X, y[:-1])


def test_sparse_X_below_limit_equals_dense(Estimator, data):
    """Sparse X is densified below SPARSE_DENSIFY_MAX_ENTRIES."""
    X, y = data
    expected = Estimator().fit(X, y).predict(X)
    for fmt in (sparse.csr_matrix, sparse.csc_array, sparse.coo_matrix):
        assert_allclose(Estimator().fit(fmt(X), y).predict(fmt(X)), expected)


def test_sparse_X_above_limit_raises_type_error_at_fit(Estimator, data, monkeypatch):
    """Sparse X larger than the limit: a TypeError saying why, at fit only."""
    X, y = data
    model = Estimator().fit(X, y)
    monkeypatch.setattr(sknetk._base, "SPARSE_DENSIFY_MAX_ENTRIES", 10)
    with pytest.raises(TypeError, match="SPARSE_DENSIFY_MAX_ENTRIES=10"):
        Estimator().fit(sparse.csr_matrix(X), y)
    # Prediction densifies block by block (here 3 rows at a time) instead.
    assert_allclose(model.predict(sparse.csr_matrix(X)), model.predict(X))


def test_sparse_nan_raises(Estimator, data):
    """NaN stored in a sparse matrix (also in formats converted to CSR)."""
    X, y = data
    X_bad = X.copy()
    X_bad[0, 0] = np.nan
    for fmt in (sparse.csr_matrix, sparse.dok_matrix):
        with pytest.raises(ValueError, match="NaN"):
            Estimator().fit(fmt(X_bad), y)


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        (np.array([1.0, np.nan] + [1.0] * 10), "NaN"),
        (np.array([1.0, np.inf] + [1.0] * 10), "infinity"),
        (float("nan"), "NaN"),
        (np.array([1.0, -0.5] + [1.0] * 10), "[Nn]egative"),
        (-1.0, "[Nn]egative"),
        (np.zeros(12), "non-zero"),
        (np.ones(11), "shape"),
        (np.ones((12, 2)), "1D"),
    ],
)
def test_invalid_sample_weight(Estimator, data, sample_weight, match):
    """NaN, infinite, negative, all-zero or misshapen sample weights."""
    X, y = data
    with pytest.raises(ValueError, match=match):
        Estimator().fit(X, y, sample_weight=sample_weight)


def test_classifier_weights_leaving_one_class_raise(data):
    """Zero weights that leave a single class."""
    X, y = data
    y2 = y % 2
    with pytest.raises(ValueError, match="at least two classes"):
        NTKClassifier().fit(X, y2, sample_weight=(y2 == 0).astype(float))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(parameterization="standard"), "width"),
        (dict(activation="leaky_relu", activation_params={"slope": 0.1}), "slope"),
        (dict(activation="erf", activation_params={"a": float("nan")}), "finite"),
        (dict(weight_std=float("inf")), "weight_std"),
        (dict(alpha=float("inf")), "alpha"),
    ],
)
def test_invalid_parameter_combinations(Estimator, data, params, match):
    """Values the declarative constraints cannot see raise ValueError at fit."""
    X, y = data
    with pytest.raises(ValueError, match=match):
        Estimator(**params).fit(X, y)


def test_unknown_parameter_values_raise(Estimator, data):
    """Declarative validation: a clear InvalidParameterError (a ValueError)."""
    X, y = data
    with pytest.raises(ValueError, match="'activation' parameter"):
        Estimator(activation="tanh").fit(X, y)
    with pytest.raises(ValueError, match="'device' parameter"):
        Estimator(device="tpu").fit(X, y)
    with pytest.raises(ValueError, match="'alpha' parameter"):
        Estimator(alpha=-1.0).fit(X, y)
