"""
=====================================================
Calibrated intervals from the infinite network
=====================================================

:class:`~sknetk.NTKRegressor` predicts the mean of an infinitely wide network
trained by gradient descent, and with ``return_std=True`` the spread around
it. The kernels live in the units of the random network's outputs, which have
nothing to do with those of ``y``; the estimator therefore fits an output
scale (``output_scale_``, the maximum-likelihood amplitude of the Gaussian
process of the standardized targets) and adds the observation noise that its
ridge stands for. This example checks that the resulting 95% intervals cover
about 95% of new targets, and compares them with a
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` whose RBF kernel,
amplitude and noise are all fitted by the marginal likelihood.

You will see the difference between the predictive intervals of a new
observation (the default) and the latent intervals of the function
(``latent=True``), and a reliability diagram: for every nominal level, the
fraction of held-out targets that fall inside the central interval.
"""

# %%
# Intervals in one dimension
# --------------------------
# Forty noisy samples of a smooth function. The predictive interval (light)
# contains the noise; the latent one (dark) is the uncertainty of the mean,
# which grows away from the data.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from sknetk import NTKRegressor

rng = np.random.default_rng(0)
X = np.sort(rng.uniform(-3, 3, size=40)).reshape(-1, 1)
y = 10 + 3 * np.sin(2 * X[:, 0]) + 0.5 * rng.normal(size=40)
grid = np.linspace(-5, 5, 300).reshape(-1, 1)

model = NTKRegressor(alpha=0.05, bias_std=0.5).fit(X, y)
mean, std = model.predict(grid, return_std=True)
_, std_f = model.predict(grid, return_std=True, latent=True)

fig, ax = plt.subplots(figsize=(7, 4))
ax.fill_between(grid[:, 0], mean - 1.96 * std, mean + 1.96 * std, alpha=0.2)
ax.fill_between(grid[:, 0], mean - 1.96 * std_f, mean + 1.96 * std_f, alpha=0.4)
ax.plot(grid[:, 0], mean, label="NTK mean")
ax.scatter(X[:, 0], y, s=12, color="k", label="training data")
ax.set(xlabel="x", ylabel="y", title="95% predictive (light) and latent (dark)")
ax.legend(loc="lower left")
print(f"intercept_ = {model.intercept_:.2f}, output_scale_ = {model.output_scale_:.3f}")

# %%
# Coverage on held-out data
# -------------------------
# ``load_diabetes``, 5-fold cross-validation, standardized features. For each
# test target we keep its standardized residual ``(y - mean) / std``; a
# calibrated model has residuals distributed as ``N(0, 1)``.


def residuals(make_model, X, y):
    out = []
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        scaler = StandardScaler().fit(X[train])
        with warnings.catch_warnings():
            # the GP's optimizer may stop at a bound of its kernel parameters
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = make_model().fit(scaler.transform(X[train]), y[train])
        mean, std = fitted.predict(scaler.transform(X[test]), return_std=True)
        out.append((y[test] - mean) / std)
    return np.concatenate(out)


X_d, y_d = load_diabetes(return_X_y=True)
models = {
    "NTKRegressor()": lambda: NTKRegressor(),
    "NTKRegressor(kernel='nngp')": lambda: NTKRegressor(kernel="nngp"),
    "GPR(C * RBF + White)": lambda: GaussianProcessRegressor(
        ConstantKernel() * RBF() + WhiteKernel(), normalize_y=True
    ),
}
z = {name: residuals(make, X_d, y_d) for name, make in models.items()}
for name, r in z.items():
    coverage = np.mean(np.abs(r) <= norm.ppf(0.975))
    print(f"{name:>28}: 95% interval covers {coverage:.1%} of the test targets")

# %%
# Reliability diagram
# -------------------
# For nominal levels from 5% to 99%, the fraction of test targets inside the
# central interval of that level. A calibrated model follows the diagonal.
levels = np.linspace(0.05, 0.99, 40)
fig, ax = plt.subplots(figsize=(5, 5))
ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="calibrated")
for name, r in z.items():
    observed = [np.mean(np.abs(r) <= norm.ppf(0.5 + p / 2)) for p in levels]
    ax.plot(levels, observed, label=name)
ax.set(
    xlabel="nominal level of the central interval",
    ylabel="observed fraction of test targets inside",
    title="load_diabetes, 5-fold",
)
ax.legend(loc="upper left")
plt.show()
