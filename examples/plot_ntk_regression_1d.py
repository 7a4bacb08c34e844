"""
====================================================================
NTK regression in one dimension, next to RBF kernel ridge and an MLP
====================================================================

An infinitely wide ReLU network trained by gradient descent on squared loss
predicts exactly as kernel ridge regression with its Neural Tangent Kernel.
This example fits :class:`~sknetk.NTKRegressor` to a noisy one-dimensional
function and puts it next to scikit-learn's
:class:`~sklearn.kernel_ridge.KernelRidge` with an RBF kernel and a finite
:class:`~sklearn.neural_network.MLPRegressor` trained on the same points.

You will learn why the NTK of a network needs biases (``bias_std > 0``) on
one-dimensional input, how it interpolates and extrapolates differently from
an RBF kernel (piecewise-linear-like between points, linear growth away from
the data instead of a decay to zero), and that it needs no bandwidth to tune.
"""

# %%
# Data
# ----
# Thirty noisy samples of a smooth function on ``[-3, 3]``; the test grid
# extends past the training interval to show extrapolation.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPRegressor

from sknetk import NTKRegressor


def target(x):
    return np.sin(2 * x) + 0.3 * x


rng = np.random.default_rng(0)
X_train = np.sort(rng.uniform(-3, 3, size=30)).reshape(-1, 1)
y_train = target(X_train.ravel()) + 0.1 * rng.normal(size=30)
X_grid = np.linspace(-4.5, 4.5, 400).reshape(-1, 1)
inside = np.abs(X_grid.ravel()) <= 3

# %%
# Why biases matter in one dimension
# ----------------------------------
# Without biases, the first layer sees only ``w * x``: every pair of inputs
# of the same sign is perfectly aligned, so the kernel of ``x`` and ``x'`` is
# ``|x| |x'|`` times a constant that depends only on their signs. The model
# can then fit only functions of the form ``a * |x|`` on each side of zero.
# With ``bias_std=1`` the first layer sees the direction of ``(x, 1)``
# instead, and the kernel varies smoothly with ``x``.
no_bias = NTKRegressor(alpha=1e-2, bias_std=0.0).fit(X_train, y_train)
with_bias = NTKRegressor(alpha=1e-2, bias_std=1.0).fit(X_train, y_train)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(X_train, y_train, "k.", label="training points")
ax.plot(X_grid, no_bias.predict(X_grid), label="NTK, bias_std=0")
ax.plot(X_grid, with_bias.predict(X_grid), label="NTK, bias_std=1")
ax.set_xlabel("x")
ax.legend(loc="upper left")
ax.set_title("Biases let a 1-D NTK represent more than |x|")
fig.tight_layout()

# %%
# Three models
# ------------
# The NTK regressor uses a depth-3 ReLU network with unit weight and bias
# standard deviations, and a small ridge. The RBF kernel ridge needs its
# bandwidth ``gamma`` tuned, which we do by 5-fold cross-validation. The MLP
# has two hidden layers of 64 ReLU units trained by L-BFGS.
ntk = NTKRegressor(alpha=1e-2, depth=3, bias_std=1.0).fit(X_train, y_train)

rbf = GridSearchCV(
    KernelRidge(kernel="rbf", alpha=1e-2),
    {"gamma": np.logspace(-2, 1, 10)},
    cv=5,
).fit(X_train, y_train)

mlp = MLPRegressor(
    hidden_layer_sizes=(64, 64),
    solver="lbfgs",
    alpha=1e-3,
    max_iter=2000,
    random_state=0,
).fit(X_train, y_train)

models = {
    "NTK (depth 3)": ntk,
    f"RBF kernel ridge (gamma={rbf.best_params_['gamma']:.2g})": rbf,
    "MLP 64-64 (trained)": mlp,
}
y_true = target(X_grid.ravel())
for name, model in models.items():
    rmse = mean_squared_error(y_true[inside], model.predict(X_grid[inside])) ** 0.5
    print(f"{name:40s} RMSE on [-3, 3]: {rmse:.3f}")

# %%
# Predictions
# -----------
# Inside the data the three fits are close. Outside it, the RBF prediction
# decays back to zero (its kernel vanishes far from the data), while the NTK
# and the trained ReLU network both continue along straight lines, with
# different slopes: far from the data, a ReLU network is linear along any
# ray, and so is the NTK's prediction, which is positively homogeneous in
# ``(x, 1)`` like the network.
fig, ax = plt.subplots(figsize=(7, 4))
ax.axvspan(-4.5, -3, color="0.92")
ax.axvspan(3, 4.5, color="0.92")
ax.plot(X_grid, y_true, "k--", lw=1, label="true function")
ax.plot(X_train, y_train, "k.", label="training points")
for name, model in models.items():
    ax.plot(X_grid, model.predict(X_grid), label=name)
ax.set_xlabel("x")
ax.set_ylim(-3, 3)
ax.legend(loc="lower right", fontsize="small")
ax.set_title("Shaded: outside the training interval")
fig.tight_layout()

# %%
# What depth does to the kernel
# -----------------------------
# The NTK has no bandwidth; its shape is set by the architecture. Plotting
# ``K(x, 0.5) / K(0.5, 0.5)`` shows it. A shallow ReLU network's NTK grows
# linearly away from the origin; as depth grows, the kernel flattens towards a
# constant, with only a small part that still tells inputs apart (deep
# networks at initialisation map all inputs to nearly the same direction). A
# deep NTK therefore needs a smaller ridge, and depth is best chosen by
# cross-validation (see :class:`~sknetk.NTKRegressorCV`), like an RBF
# bandwidth.
from sknetk.kernels import ntk_kernel

x0 = np.array([[0.5]])
fig, ax = plt.subplots(figsize=(7, 3.5))
for depth in (1, 3, 10, 30):
    K = ntk_kernel(X_grid, x0, depth=depth, bias_std=1.0).ravel()
    ax.plot(
        X_grid,
        K / ntk_kernel(x0, depth=depth, bias_std=1.0)[0, 0],
        label=f"depth {depth}",
    )
ax.axvline(0.5, color="0.6", lw=0.8)
ax.set_xlabel("x")
ax.set_ylabel("K(x, 0.5) / K(0.5, 0.5)")
ax.legend()
fig.tight_layout()
plt.show()
