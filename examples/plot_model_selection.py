"""
==========================================================================
Model selection: GridSearchCV over a pipeline, and the leave-one-out NTK
==========================================================================

:class:`~sknetk.NTKRegressor` is an ordinary scikit-learn estimator, so its
ridge and depth can be tuned with :class:`~sklearn.model_selection.GridSearchCV`
inside a :class:`~sklearn.pipeline.Pipeline`. For kernel ridge regression
there is a much cheaper way: after one eigendecomposition of the training
kernel, the exact leave-one-out error of every ridge costs only a matrix
product, and one pass of the NTK recursion gives the kernels of every depth.
:class:`~sknetk.NTKRegressorCV` does this, like
:class:`~sklearn.linear_model.RidgeCV` does for linear models.

You will learn how to write the grid search (and why the target is
standardized), how to read :class:`~sknetk.NTKRegressorCV`'s results, and how
the two compare in time and in the model they choose.
"""

# %%
# Data and pipeline
# -----------------
# The diabetes data set that ships with scikit-learn: 442 patients, 10
# features, a disease-progression score to predict. We hold out a quarter of
# the rows for a final test. The NTK model has no intercept, so the target
# is standardized as well as the features, with
# :class:`~sklearn.compose.TransformedTargetRegressor`.
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknetk import NTKRegressor, NTKRegressorCV

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0
)

alphas = np.logspace(-3, 1, 5)  # relative to the kernel's mean diagonal
depths = [1, 2, 3, 4, 5]


def with_scaling(regressor):
    """Standardize X in a pipeline and y around it."""
    return TransformedTargetRegressor(
        make_pipeline(StandardScaler(), regressor), transformer=StandardScaler()
    )


# %%
# GridSearchCV over the pipeline
# ------------------------------
# Parameters of a step inside the pipeline inside the target transformer are
# addressed by their path: ``regressor__ntkregressor__alpha``. Every one of
# the 25 candidates is fitted on each of 5 folds, 125 fits in all, each
# computing its own kernel. Each fit here is small, so the estimator runs in
# one thread (``n_jobs=1``); to use several cores, parallelise the search
# itself with ``GridSearchCV(n_jobs=...)``.
search = GridSearchCV(
    with_scaling(NTKRegressor(alpha_scale="mean_diag", n_jobs=1)),
    {
        "regressor__ntkregressor__alpha": alphas,
        "regressor__ntkregressor__depth": depths,
    },
    cv=KFold(5, shuffle=True, random_state=0),
    scoring="neg_mean_squared_error",
)
start = time.perf_counter()
search.fit(X_train, y_train)
grid_seconds = time.perf_counter() - start
best_alpha = search.best_params_["regressor__ntkregressor__alpha"]
best_depth = search.best_params_["regressor__ntkregressor__depth"]
print(
    f"GridSearchCV:   {grid_seconds:6.2f} s, alpha={best_alpha:.3g}, "
    f"depth={best_depth}, test R^2 "
    f"{search.best_estimator_.score(X_test, y_test):.3f}"
)

# %%
# The leave-one-out estimator
# ---------------------------
# :class:`~sknetk.NTKRegressorCV` takes the lists of alphas and depths
# directly. With the default ``cv=None`` it scores every pair by exact
# leave-one-out: one kernel recursion pass for all depths, one
# eigendecomposition per depth, then a matrix product per alpha.
loo = with_scaling(
    NTKRegressorCV(alphas=alphas, depths=depths, alpha_scale="mean_diag")
)
start = time.perf_counter()
loo.fit(X_train, y_train)
loo_seconds = time.perf_counter() - start
cv_model = loo.regressor_[-1]
print(
    f"NTKRegressorCV: {loo_seconds:6.2f} s, alpha={cv_model.alpha_relative_:.3g}, "
    f"depth={cv_model.depth_}, test R^2 {loo.score(X_test, y_test):.3f}"
)
print(f"speed-up: {grid_seconds / loo_seconds:.0f}x")

# %%
# Both searches land in the same region of the grid and give test scores
# within noise of each other; the leave-one-out search costs a small
# fraction of the grid search. Its ``cv_results_`` follow
# ``GridSearchCV``'s layout, so the whole landscape is one reshape away. The
# scores are negative mean squared errors of the standardized target (the
# default for ``NTKRegressorCV``).
results = cv_model.cv_results_
scores = np.empty((len(depths), len(alphas)))
for params, score in zip(results["params"], results["mean_test_score"]):
    scores[
        depths.index(params["depth"]), int(np.argmin(np.abs(alphas - params["alpha"])))
    ] = score

fig, ax = plt.subplots(figsize=(7, 3.5))
image = ax.imshow(-scores, aspect="auto", cmap="viridis_r", norm=LogNorm())
ax.set_xticks(range(len(alphas)), [f"{a:.0e}" for a in alphas], rotation=45)
ax.set_yticks(range(len(depths)), depths)
ax.set_xlabel("alpha (relative to the mean kernel diagonal)")
ax.set_ylabel("depth")
ax.plot(
    list(alphas).index(cv_model.alpha_relative_),
    depths.index(cv_model.depth_),
    "r*",
    markersize=14,
)
fig.colorbar(image, label="leave-one-out MSE (standardized y)")
ax.set_title("NTKRegressorCV: leave-one-out error over the grid")
fig.tight_layout()

# %%
# The grid search's own landscape, for comparison (5-fold mean squared error
# in the original units of ``y``, so only the shape is comparable):
grid_scores = -search.cv_results_["mean_test_score"].reshape(len(alphas), len(depths)).T
fig, ax = plt.subplots(figsize=(7, 3.5))
image = ax.imshow(grid_scores, aspect="auto", cmap="viridis_r", norm=LogNorm())
ax.set_xticks(range(len(alphas)), [f"{a:.0e}" for a in alphas], rotation=45)
ax.set_yticks(range(len(depths)), depths)
ax.set_xlabel("alpha (relative to the mean kernel diagonal)")
ax.set_ylabel("depth")
fig.colorbar(image, label="5-fold MSE")
ax.set_title("GridSearchCV: 5-fold error over the same grid")
fig.tight_layout()
plt.show()

# %%
# When to use which
# -----------------
# Use :class:`~sknetk.NTKRegressorCV` (or
# :class:`~sknetk.NTKClassifierCV`) to tune the ridge, the depth, the
# activation or the number of frozen layers: it is exact and costs a few
# plain fits. Pass ``cv=5`` to it for K-fold instead of leave-one-out; it
# still computes each depth's kernel once. Use ``GridSearchCV`` when the
# search involves other steps of the pipeline, such as the scale of
# :class:`~sknetk.FourierFeatures` or a feature selector.
