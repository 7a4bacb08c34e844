"""scikit-learn's common estimator checks over every sknetk estimator."""

import inspect

import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

import sknetk
from sknetk._classification import NTKClassifier
from sknetk._regression import NTKRegressor
from sknetk.fourier import FourierFeatures

# Defaults first, then non-default settings; the small working memory makes
# the kernels and predictions go through many tiles.
ESTIMATORS = [
    NTKRegressor(),
    NTKRegressor(
        kernel="nngp",
        depth=2,
        alpha_scale="mean_diag",
        bias_std=0.5,
        working_memory=0.05,
        n_jobs=1,
    ),
    NTKClassifier(),
    NTKClassifier(
        activation="erf", parameterization="standard", width=64, working_memory=0.05
    ),
    FourierFeatures(n_components=16),
    FourierFeatures(n_components=4, kind="positional", scale=3.0),
    FourierFeatures(kind="basic"),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    """Every scikit-learn common check passes, with no expected failure."""
    check(estimator)


@pytest.mark.parametrize(
    "estimator", [NTKRegressor(), NTKClassifier(), FourierFeatures()], ids=repr
)
def test_param_validation(estimator):
    """Invalid parameter types and values raise ``InvalidParameterError``."""
    check_param_validation(type(estimator).__name__, estimator)


def _public_estimator_classes():
    classes = set()
    for name in getattr(sknetk, "__all__", []):
        obj = getattr(sknetk, name, None)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            classes.add(obj)
    # Until the package exports them, the estimators defined here count too.
    return classes | {NTKRegressor, NTKClassifier, FourierFeatures}


def test_common_checks_cover_every_public_estimator():
    """Each estimator class exported in ``sknetk.__all__`` is in ESTIMATORS."""
    covered = {type(est) for est in ESTIMATORS}
    missing = sorted(cls.__name__ for cls in _public_estimator_classes() - covered)
    assert not missing, f"add these estimators to ESTIMATORS: {missing}"
