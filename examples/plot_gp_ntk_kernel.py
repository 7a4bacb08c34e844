"""
=====================================================================
The infinite network as a Gaussian-process kernel, fitted by evidence
=====================================================================

:class:`sknetk.gaussian_process.NNGP` and :class:`~sknetk.gaussian_process.NTK`
are scikit-learn Gaussian-process kernels. Put into
:class:`~sklearn.gaussian_process.GaussianProcessRegressor`, the network's
weight and bias standard deviations become hyperparameters fitted by
maximising the log marginal likelihood (with its exact gradient), next to an
amplitude (:class:`~sklearn.gaussian_process.kernels.ConstantKernel`) and a
noise level (:class:`~sklearn.gaussian_process.kernels.WhiteKernel`).

You will see the fitted hyperparameters and the predictive band of a
one-dimensional fit, the marginal-likelihood landscape over the two network
hyperparameters, and, on the diabetes data, the coverage of the 95%
predictive interval next to an RBF Gaussian process.
"""

# %%
# A one-dimensional problem
# -------------------------
# Forty noisy samples of a smooth function. The kernel is an amplitude times
# the NNGP of a depth-3 ReLU network, plus a noise term. For the ReLU family
# the amplitude and ``weight_std`` do almost the same job (the kernel grows
# like ``weight_std ** (2 * depth + 2)``), so ``weight_std`` is fixed and the
# amplitude, ``bias_std`` and the noise level are fitted.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sknetk.gaussian_process import NNGP


def target(x):
    return np.sin(2 * x) + 0.3 * x


rng = np.random.default_rng(0)
X_train = np.sort(rng.uniform(-3, 3, size=40)).reshape(-1, 1)
y_train = target(X_train.ravel()) + 0.2 * rng.normal(size=40)
X_grid = np.linspace(-4.5, 4.5, 300).reshape(-1, 1)

kernel = ConstantKernel() * NNGP(depth=3, weight_std_bounds="fixed") + WhiteKernel()
prior = GaussianProcessRegressor(kernel, optimizer=None).fit(X_train, y_train)
fitted = GaussianProcessRegressor(kernel, n_restarts_optimizer=2, random_state=0)
fitted.fit(X_train, y_train)
print("initial kernel:", kernel)
print("fitted kernel: ", fitted.kernel_)
print(
    "log marginal likelihood: "
    f"{prior.log_marginal_likelihood_value_:.1f} (initial), "
    f"{fitted.log_marginal_likelihood_value_:.1f} (fitted)"
)

# %%
# The predictive band of ``y`` (mean +- 1.96 standard deviations, the noise
# term included) before and after fitting. With the initial hyperparameters
# the noise level of 1 swamps the data; the fitted model has found a noise
# standard deviation close to the true 0.2 and a band that widens away from
# the data.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, model, title in (
    (axes[0], prior, "initial hyperparameters"),
    (axes[1], fitted, "fitted by marginal likelihood"),
):
    mean, std = model.predict(X_grid, return_std=True)
    ax.fill_between(
        X_grid.ravel(),
        mean - 1.96 * std,
        mean + 1.96 * std,
        alpha=0.3,
        label="95% predictive band",
    )
    ax.plot(X_grid, mean, label="posterior mean")
    ax.plot(X_grid, target(X_grid), "k--", lw=1, label="true function")
    ax.plot(X_train, y_train, "k.", label="training points")
    ax.set_title(title)
    ax.set_xlabel("x")
axes[0].legend(loc="upper left", fontsize="small")
fig.tight_layout()

# %%
# The marginal-likelihood landscape
# ---------------------------------
# With ``weight_std`` free instead of an amplitude, the two network
# hyperparameters span the landscape below (the noise level held at its
# fitted value). The optimizer follows the exact gradient to its maximum.
free = GaussianProcessRegressor(NNGP(depth=3) + WhiteKernel(), random_state=0)
free.fit(X_train, y_train)
theta_opt = free.kernel_.theta  # log weight_std, log bias_std, log noise
log_w = np.log(np.linspace(0.5, 4.0, 30))
log_b = np.linspace(np.log(0.1), np.log(20.0), 30)
lml = np.array(
    [
        [free.log_marginal_likelihood([lw, lb, theta_opt[2]]) for lw in log_w]
        for lb in log_b
    ]
)
fig, ax = plt.subplots(figsize=(5, 4))
levels = lml.max() - np.array([40, 20, 10, 5, 2, 1, 0.5, 0])
contour = ax.contour(np.exp(log_w), np.exp(log_b), lml, levels=levels)
ax.clabel(contour, fmt="%.1f", fontsize="small")
ax.plot(*np.exp(theta_opt[:2]), "r*", markersize=12, label="fitted")
ax.set_yscale("log")
ax.set_xlabel("weight_std")
ax.set_ylabel("bias_std")
ax.set_title("Log marginal likelihood")
ax.legend()
fig.tight_layout()
print("fitted without an amplitude:", free.kernel_)

# %%
# Calibrated intervals on real data
# ---------------------------------
# On the diabetes data (standardized features, a quarter held out), the
# NNGP Gaussian process and an RBF one reach similar marginal likelihoods,
# test :math:`R^2` and coverage of the nominal 95% predictive interval.
X, y = load_diabetes(return_X_y=True)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
models = {
    "NNGP": ConstantKernel() * NNGP(depth=3, weight_std_bounds="fixed") + WhiteKernel(),
    "RBF": ConstantKernel() * RBF() + WhiteKernel(),
}
print(f"{'kernel':6s} {'log ML':>8s} {'R^2':>6s} {'coverage':>9s}")
coverage = {}
for name, kernel in models.items():
    gpr = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
    gpr.fit(X_tr, y_tr)
    mean, std = gpr.predict(X_te, return_std=True)
    coverage[name] = np.mean(np.abs(y_te - mean) <= 1.96 * std)
    print(
        f"{name:6s} {gpr.log_marginal_likelihood_value_:8.1f} "
        f"{gpr.score(X_te, y_te):6.3f} {coverage[name]:9.3f}"
    )
    print("       ", gpr.kernel_)

fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(list(coverage), list(coverage.values()))
ax.axhline(0.95, color="k", ls="--", lw=1, label="nominal 95%")
ax.set_ylim(0.8, 1.0)
ax.set_ylabel("test coverage")
ax.set_title("Diabetes: 95% predictive interval")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# When to use which
# -----------------
# :class:`~sknetk.NTKRegressor` predicts as the trained infinite network and
# chooses its ridge by cross-validation or leave-one-out; the Gaussian
# process fits the network's hyperparameters, an amplitude and a noise level
# by the marginal likelihood, and its predictive standard deviation is that
# of a fitted probabilistic model. See :ref:`gaussian_process`.
