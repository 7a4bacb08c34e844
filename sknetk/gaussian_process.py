"""The NTK and NNGP as scikit-learn Gaussian-process kernels, with exact gradients.

:class:`NTK` and :class:`NNGP` are :class:`sklearn.gaussian_process.kernels.Kernel`
subclasses: they go into :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
and :class:`~sklearn.gaussian_process.GaussianProcessClassifier`, compose with
:class:`~sklearn.gaussian_process.kernels.ConstantKernel`,
:class:`~sklearn.gaussian_process.kernels.WhiteKernel` and the other kernels by
``+``, ``*`` and ``**``, and their hyperparameters (``weight_std``,
``bias_std`` and, on request, the activation's own parameters) are fitted by
maximising the log marginal likelihood. The values are those of
:func:`sknetk.kernels.ntk_kernel` and :func:`sknetk.kernels.nngp_kernel`
(computed by them); the gradient with respect to the log-hyperparameters is
exact, by forward-mode differentiation of the same layer recursion.
"""

import dataclasses
import math

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import get_config
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils import check_array
from threadpoolctl import threadpool_limits

from . import _forward_mode as fm
from ._activations import cos2, get_activation, sin_dual
from ._params import estimator_dataclass
from ._recursion import KernelSpec, diag_recursion, tile_recursion, variance_path
from .kernels import nngp_diag, nngp_kernel, ntk_diag, ntk_kernel

__all__ = ["NTK", "NNGP"]

#: Largest side of a square tile of the gradient computation (like the
#: kernels' tiles: the temporaries of one tile stay cache-sized).
_MAX_TILE_SIDE = 256
#: Tile-sized dual arrays alive at once, counted generously.
_DUALS_PER_ENTRY = 24


# ---------------------------------------------------------------------------
# The dual-number spec: the recursion of _recursion.py, run on duals
# ---------------------------------------------------------------------------
def _dual_cos2(c, shift):
    """``cos(2c)`` (``-cos(2c)`` when ``shift``) as a dual in ``c``.

    The value is :func:`sknetk._activations.cos2`'s, bit for bit.
    """
    value = cos2(float(c.v), shift)
    s = math.sin(2 * float(c.v))
    return fm.Dual(value, c.t * (2 * s if shift else -2 * s))


@dataclasses.dataclass(frozen=True)
class _DualSpec(KernelSpec):
    """A :class:`~sknetk.kernels.KernelSpec` whose parameters may be duals.

    The sine and cosine activations map their phase ``c`` to ``cos(2c)``
    with :mod:`math` in the registry; with a dual ``c`` that map is done here.
    """

    @property
    def _act(self):
        act = super()._act
        if self.activation in ("sin", "cos") and isinstance(
            dict(self.activation_params)["c"], fm.Dual
        ):
            shift = self.activation == "cos"

            def corr_dual(xp, s1, s2, rho, a, b, c):
                return sin_dual(xp, s1, s2, rho, a, b, _dual_cos2(c, shift))

            act = dataclasses.replace(act, corr_dual=corr_dual)
        return act


def _tile_side(n_params, budget, n_threads=1):
    """Side of a square tile whose dual temporaries fit ``budget`` (bytes)."""
    per_entry = _DUALS_PER_ENTRY * (n_params + 1) * 8 * n_threads
    return max(16, min(_MAX_TILE_SIDE, int(math.sqrt(budget / per_entry))))


def _tangent_block(block, n_params, shape):
    """The tangents ``(P,) + shape`` of ``block`` (zeros for a constant)."""
    if isinstance(block, fm.Dual):
        return block.t
    return np.zeros((n_params,) + shape)


def _gradient(X, spec, want_ntk, n_params, n_jobs=-1):
    """``dK/dp`` of the symmetric kernel ``K(X, X)``, shape ``(n, n, P)``.

    ``spec`` carries scalar duals with ``P`` tangents for the differentiated
    parameters. The tiles, the symmetrised Gram product and the exact
    correlation-one diagonal are those of ``sknetk.kernels``.
    """
    xp = fm.xp
    n, d = X.shape
    which = "ntk" if want_ntk else "nngp"
    grad = np.empty((n, n, n_params))
    if n == 0:
        return grad
    path = variance_path(xp, X, spec)
    nngps, ntks = diag_recursion(xp, X, spec, want_ntk, False, path)
    diag = {"nngp": nngps, "ntk": ntks}
    roots = {"nngp": [xp.sqrt(v) for v in nngps]}
    if want_ntk:
        roots["ntk"] = [xp.sqrt(v) for v in ntks]
    exact = diag[which][0]
    exact_t = _tangent_block(exact, n_params, (n,))
    q0 = np.sum(X * X, axis=1) / d
    threads = max(1, effective_n_jobs(n_jobs))
    budget = float(get_config()["working_memory"]) * 2**20
    side = _tile_side(
        n_params, budget, min(threads, math.ceil(n / _MAX_TILE_SIDE) ** 2)
    )

    def rows(lo, hi):
        return (
            [q[lo:hi] for q in path[0]],
            {name: [r[lo:hi] for r in v] for name, v in roots.items()},
        )

    def work(i0, i1, j0, j1):
        with np.errstate(all="ignore"):  # per thread; the result is checked
            one_tile(i0, i1, j0, j1)

    def one_tile(i0, i1, j0, j1):
        sigma = (X[i0:i1, :] @ X[j0:j1, :].T) * (1.0 / d)
        if i0 == j0:
            sigma = (sigma + sigma.T) * 0.5
            np.fill_diagonal(sigma, q0[i0:i1])
        nngp, ntk = tile_recursion(
            xp, sigma, rows(i0, i1), rows(j0, j1), spec, want_ntk, False, d
        )
        block = (ntk if want_ntk else nngp)[0]
        t = np.moveaxis(_tangent_block(block, n_params, sigma.shape), 0, -1)
        if i0 == j0:
            t = np.array(t)  # writable
            idx = np.arange(i1 - i0)
            t[idx, idx, :] = exact_t[:, i0:i1].T
        grad[i0:i1, j0:j1, :] = t
        if j0 != i0:
            grad[j0:j1, i0:i1, :] = np.swapaxes(t, 0, 1)

    tiles = [
        (i0, min(i0 + side, n), j0, min(j0 + side, n))
        for i0 in range(0, n, side)
        for j0 in range(i0, n, side)
    ]
    threads = min(threads, len(tiles))
    if threads == 1:
        for bounds in tiles:
            work(*bounds)
    else:
        # NumPy releases the GIL in the elementwise passes: threads over tiles,
        # one BLAS thread each (the tile Gram products are small).
        with threadpool_limits(limits=1, user_api="blas"):
            Parallel(n_jobs=threads, backend="threading")(
                delayed(work)(*bounds) for bounds in tiles
            )
    return grad


def _rows_as_computed(X):
    """``X`` in float64 as the kernel functions compute with it (validated).

    Rows whose mean square underflows are zero rows there (the functions warn
    about them when computing the values).
    """
    X = check_array(X, dtype=np.float64, ensure_min_samples=0, input_name="X")
    if X.shape[0] == 0 or X.shape[1] == 0:
        return X
    q = np.sum(X * X, axis=1) / X.shape[1]
    under = (q < np.finfo(np.float64).smallest_normal) & np.any(X != 0, axis=1)
    return np.where(under[:, None], 0.0, X) if under.any() else X


# ---------------------------------------------------------------------------
# The kernels
# ---------------------------------------------------------------------------
def _check_bounds(name, bounds):
    if isinstance(bounds, str):
        if bounds != "fixed":
            raise ValueError(
                f"{name} must be 'fixed' or a pair (low, high), got {bounds!r}."
            )
        return bounds
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be 'fixed' or a pair (low, high), got {bounds!r}."
        ) from None
    if not (0 < low <= high < math.inf):
        raise ValueError(
            f"{name} must satisfy 0 < low <= high < inf (bounds on the "
            f"parameter's magnitude), got {bounds!r}."
        )
    return (low, high)


def _fmt(value):
    return "None" if value is None else f"{float(value):.3g}"


class _NetworkKernel(Kernel):
    """Shared machinery of :class:`NTK` and :class:`NNGP`."""

    _which = None  # "ntk" or "nngp"

    # -- hyperparameters ---------------------------------------------------
    def _entries(self):
        """``(name, key, value, bounds, fixed)`` per hyperparameter, in order.

        ``key`` is ``None`` for ``weight_std``/``bias_std`` and the activation
        parameter's name otherwise. A parameter whose value is zero (or a
        ``bias_std`` of ``None``) cannot move in log space: it is fixed.
        """
        entries = []
        for name in ("weight_std", "bias_std"):
            value = getattr(self, name)
            bounds = _check_bounds(f"{name}_bounds", getattr(self, f"{name}_bounds"))
            fixed = bounds == "fixed" or value is None or value == 0
            entries.append((name, None, value, bounds, fixed))
        act = get_activation(self.activation)
        params = act.params(self.activation_params)
        spec_bounds = self.activation_params_bounds
        if isinstance(spec_bounds, str):
            _check_bounds("activation_params_bounds", spec_bounds)
            spec_bounds = {}
        elif not isinstance(spec_bounds, dict):
            raise ValueError(
                "activation_params_bounds must be 'fixed' or a dict mapping "
                f"parameter names to bounds, got {spec_bounds!r}."
            )
        unknown = set(spec_bounds) - set(params)
        if unknown:
            raise ValueError(
                f"activation_params_bounds names {sorted(unknown)}, which "
                f"activation {self.activation!r} does not have; it has "
                f"{sorted(params) or 'no parameters'}."
            )
        for key in sorted(params):
            bounds = _check_bounds(
                f"activation_params_bounds[{key!r}]", spec_bounds.get(key, "fixed")
            )
            value = params[key]
            fixed = bounds == "fixed" or value == 0
            entries.append((f"activation_params__{key}", key, value, bounds, fixed))
        return entries

    @property
    def hyperparameters(self):
        """List of Hyperparameter: weight_std, bias_std, the activation's."""
        return [
            Hyperparameter(name, "numeric", bounds, fixed=fixed)
            for name, _, _, bounds, fixed in self._entries()
        ]

    @property
    def hyperparameter_weight_std(self):
        """Hyperparameter: the weights' standard deviation."""
        return self.hyperparameters[0]

    @property
    def hyperparameter_bias_std(self):
        """Hyperparameter: the biases' standard deviation."""
        return self.hyperparameters[1]

    @property
    def theta(self):
        """Log-magnitudes of the free hyperparameters, shape (n_dims,).

        The sign of a negative activation parameter is kept when ``theta`` is
        set; only its magnitude is a hyperparameter.
        """
        values = [abs(e[2]) for e in self._entries() if not e[4]]
        return np.log(np.array(values, dtype=np.float64))

    @theta.setter
    def theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64).ravel()
        free = [e for e in self._entries() if not e[4]]
        if theta.shape[0] != len(free):
            raise ValueError(
                f"theta has {theta.shape[0]} entries; the kernel has {len(free)} "
                "free hyperparameters."
            )
        updates, act_updates = {}, {}
        for (name, key, value, _, _), log_magnitude in zip(free, theta):
            new = math.copysign(math.exp(float(log_magnitude)), value)
            if key is None:
                updates[name] = new
            else:
                act_updates[key] = new
        if act_updates:
            updates["activation_params"] = {
                **(self.activation_params or {}),
                **act_updates,
            }
        self.set_params(**updates)

    def set_params(self, **params):
        """Set the parameters of this kernel.

        Besides the constructor's parameters, ``activation_params__<name>``
        sets one activation parameter (the names of :attr:`hyperparameters`).

        Parameters
        ----------
        **params : dict
            Kernel parameters.

        Returns
        -------
        self : object
            The kernel.
        """
        prefix = "activation_params__"
        act_updates = {
            k[len(prefix) :]: params.pop(k)
            for k in list(params)
            if k.startswith(prefix)
        }
        if act_updates:
            base = params.get("activation_params", self.activation_params)
            params["activation_params"] = {**(base or {}), **act_updates}
        return super().set_params(**params)

    # -- the computation ---------------------------------------------------
    def _spec_kwargs(self):
        return dict(
            depth=self.depth,
            activation=self.activation,
            activation_params=self.activation_params,
            weight_std=self.weight_std,
            bias_std=self.bias_std,
            parameterization=self.parameterization,
            width=getattr(self, "width", None),
        )

    def _dual_spec(self, free):
        """The validated spec with the ``free`` entries replaced by seeded duals."""
        spec = KernelSpec.from_params(**self._spec_kwargs(), ntk=self._which == "ntk")
        values = [e[2] for e in free]
        duals = dict(zip((e[0] for e in free), fm.seed(values, values)))
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        for name in ("weight_std", "bias_std"):
            if name in duals:
                fields[name] = duals[name]
        fields["activation_params"] = tuple(
            (key, duals.get(f"activation_params__{key}", value))
            for key, value in spec.activation_params
        )
        return _DualSpec(**fields)

    def __call__(self, X, Y=None, eval_gradient=False):
        """Return the kernel ``k(X, Y)`` and optionally its gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Left argument of the returned kernel k(X, Y).
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Right argument of the returned kernel k(X, Y). If None, k(X, X)
            is evaluated instead.
        eval_gradient : bool, default=False
            Determines whether the gradient with respect to the log of the
            kernel hyperparameters is computed. Only supported when Y is None.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
            Kernel k(X, Y).
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, n_dims)
            The gradient of the kernel k(X, X) with respect to the log of the
            hyperparameters of the kernel (exact, by forward-mode
            differentiation of the recursion). Only returned when
            ``eval_gradient`` is True.
        """
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        free = [e for e in self._entries() if not e[4]]  # validates the bounds
        function = ntk_kernel if self._which == "ntk" else nngp_kernel
        K = function(X, Y, **self._spec_kwargs(), device="cpu")
        if not eval_gradient:
            return K
        X = _rows_as_computed(X)
        if not free:
            return K, np.empty((X.shape[0], X.shape[0], 0))
        spec = self._dual_spec(free)
        with np.errstate(all="ignore"):  # checked below
            grad = _gradient(X, spec, self._which == "ntk", len(free))
        if not np.isfinite(grad).all():
            raise ValueError(
                f"The gradient of {self!r} overflows float64 on X: "
                "scale the features or narrow the hyperparameters' bounds."
            )
        return K, grad

    def diag(self, X):
        """Return the diagonal of the kernel k(X, X), in O(n_samples).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Argument of the kernel.

        Returns
        -------
        K_diag : ndarray of shape (n_samples,)
            Diagonal of kernel k(X, X).
        """
        function = ntk_diag if self._which == "ntk" else nngp_diag
        return function(X, **self._spec_kwargs(), device="cpu")

    def is_stationary(self):
        """Return whether the kernel is stationary: False.

        Returns
        -------
        bool
            False: the kernel depends on the inputs' norms, not only on their
            difference.
        """
        return False

    @property
    def requires_vector_input(self):
        """True: the kernel is defined on fixed-length feature vectors."""
        return True

    def __repr__(self):
        parts = [
            f"weight_std={_fmt(self.weight_std)}",
            f"bias_std={_fmt(self.bias_std)}",
            f"depth={self.depth!r}",
            f"activation={self.activation!r}",
        ]
        if self.activation_params:
            inner = ", ".join(
                f"{k!r}: {_fmt(v)}" for k, v in sorted(self.activation_params.items())
            )
            parts.append(f"activation_params={{{inner}}}")
        if self.parameterization != "ntk":
            parts.append(f"parameterization={self.parameterization!r}")
        if getattr(self, "width", None) is not None:
            parts.append(f"width={self.width!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


_COMMON_PARAMETERS = """\
    weight_std : float, default=1.0
        Standard deviation of every Dense layer's weights (a hyperparameter).

    bias_std : float or None, default=0.1
        Standard deviation of every Dense layer's biases (a hyperparameter).
        ``None`` means the layers have no bias parameter: it is then not a
        hyperparameter; neither is a value of ``0.0``, which cannot move in
        log space. ``None`` and ``0.0`` give the same kernel in the ``"ntk"``
        parameterization and differ in the ``"standard"`` one (see
        :func:`sknetk.kernels.ntk_kernel`).

    depth : int, default=3
        Number of hidden ``Dense -> activation`` blocks (fixed).

    activation : str, default="relu"
        A name of :data:`sknetk.kernels.ACTIVATION_NAMES` (fixed).

    activation_params : dict, default=None
        Parameters of the activation, e.g. ``{"alpha": 0.1}`` for
        ``leaky_relu`` or ``{"a": 1, "b": 2, "c": 0}`` for ``erf``; missing ones
        take their defaults. The ones named in ``activation_params_bounds``
        are hyperparameters.

    parameterization : {"ntk", "standard"}, default="ntk"
        Parameterization of the Dense layers, as in neural-tangents (fixed)."""

_BOUNDS_PARAMETERS = """\
    weight_std_bounds : pair of floats > 0 or "fixed", default=(1e-2, 1e2)
        The lower and upper bound on ``weight_std``. If set to "fixed",
        ``weight_std`` cannot be changed during hyperparameter tuning. The
        kernel scales like ``weight_std ** (2 * depth + 2)``: wider bounds
        rarely help, and the optimizer's random restarts draw from them.

    bias_std_bounds : pair of floats > 0 or "fixed", default=(1e-2, 1e2)
        The lower and upper bound on ``bias_std``. If set to "fixed",
        ``bias_std`` cannot be changed during hyperparameter tuning.

    activation_params_bounds : "fixed" or dict, default="fixed"
        Which activation parameters are hyperparameters: a dict mapping a
        parameter name to its bounds (a pair, or "fixed"). Bounds apply to
        the magnitude; a negative parameter keeps its sign, and one equal to
        zero stays fixed. "fixed" (the default) keeps the activation as
        given."""

_NOTES = """\
    Notes
    -----
    Every hyperparameter ``p`` enters ``theta`` as ``log(|p|)``, as in
    scikit-learn's kernels. ``K_gradient`` is the exact derivative of the
    computed kernel: the layer recursion of :mod:`sknetk.kernels` runs on
    dual numbers (forward-mode differentiation), with no finite differences.
    Where the computation clips or snaps a correlation to exactly ``+-1``
    (identical or parallel rows, see ``docs/kernels.rst``), the gradient is
    that of the snapped, constant correlation. That is exact whenever the
    correlation is ``+-1`` for all hyperparameters: on the diagonal, for
    duplicated rows, and for parallel rows of a network without biases. It
    matters because the ReLU family's NTK is not differentiable in the
    correlation at ``+-1`` (its derivative there is infinite): only rows
    within rounding of parallel whose correlation does depend on the
    hyperparameters get a gradient off by at most the size of that rounding.

    Computing the gradient costs about ``(P + 1)`` kernel evaluations by the
    generic (not the fused) recursion for ``P`` free hyperparameters."""

# The examples' data (after their imports).
_EXAMPLE_DATA = """\
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3))
    >>> y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=40)"""


@estimator_dataclass
class NTK(_NetworkKernel):
    """The Neural Tangent Kernel of an infinitely wide network, as a GP kernel.

    The NTK of ``depth`` blocks of ``Dense -> activation`` and a linear
    readout (:func:`sknetk.kernels.ntk_kernel`), as a scikit-learn kernel for
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` and
    :class:`~sklearn.gaussian_process.GaussianProcessClassifier`: the weight
    and bias standard deviations (and, on request, the activation's
    parameters) are hyperparameters fitted by maximising the log marginal
    likelihood, with its exact gradient. The posterior mean of a GP with
    this kernel and noise variance ``alpha`` is the prediction of the
    infinitely wide network trained by gradient descent with ridge ``alpha``
    (what :class:`~sknetk.NTKRegressor` computes); use :class:`NNGP` for the
    exact prior of the network's random function.

    Read more in the :ref:`user guide <gaussian_process>`.

    Parameters
    ----------
    {common}

    width : int, default=None
        Hidden width (fixed); required with ``parameterization="standard"``,
        whose NTK depends on it.

    {bounds}

    See Also
    --------
    NNGP : The NNGP kernel (the network's prior covariance).
    sknetk.kernels.ntk_kernel : The same values as a function.
    sknetk.NTKRegressor : Kernel ridge regression with the NTK.

    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import ConstantKernel
    >>> from sknetk.gaussian_process import NTK
    {example_data}
    >>> kernel = ConstantKernel() * NTK(depth=2, weight_std_bounds="fixed")
    >>> gpr = GaussianProcessRegressor(kernel, alpha=1e-2, random_state=0).fit(X, y)
    >>> mean, std = gpr.predict(X[:2], return_std=True)
    >>> mean.shape, std.shape
    ((2,), (2,))
    >>> K, K_gradient = NTK(depth=2)(X, eval_gradient=True)
    >>> K_gradient.shape  # d K / d log(weight_std), d K / d log(bias_std)
    (40, 40, 2)
    """

    _which = "ntk"

    weight_std: float = 1.0
    bias_std: object = 0.1
    _: dataclasses.KW_ONLY
    depth: int = 3
    activation: str = "relu"
    activation_params: object = None
    parameterization: str = "ntk"
    width: object = None
    weight_std_bounds: object = (1e-2, 1e2)
    bias_std_bounds: object = (1e-2, 1e2)
    activation_params_bounds: object = "fixed"


@estimator_dataclass
class NNGP(_NetworkKernel):
    """The NNGP kernel of an infinitely wide network, as a GP kernel.

    The covariance of the output of ``depth`` random ``Dense -> activation``
    blocks and a linear readout (:func:`sknetk.kernels.nngp_kernel`), as a
    scikit-learn kernel: a Gaussian process with this kernel is exactly the
    prior of the infinitely wide Bayesian network, and
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` gives its
    exact posterior. The weight and bias standard deviations (and, on
    request, the activation's parameters) are hyperparameters fitted by
    maximising the log marginal likelihood, with its exact gradient.

    Read more in the :ref:`user guide <gaussian_process>`.

    Parameters
    ----------
    {common}

    {bounds}

    See Also
    --------
    NTK : The Neural Tangent Kernel.
    sknetk.kernels.nngp_kernel : The same values as a function.

    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import WhiteKernel
    >>> from sknetk.gaussian_process import NNGP
    {example_data}
    >>> gpr = GaussianProcessRegressor(NNGP(depth=2) + WhiteKernel(0.1)).fit(X, y)
    >>> gpr.kernel_.k1.hyperparameter_weight_std.name
    'weight_std'
    >>> NNGP(activation="erf", activation_params_bounds={{"b": (0.1, 10)}}).n_dims
    3
    """

    _which = "nngp"

    weight_std: float = 1.0
    bias_std: object = 0.1
    _: dataclasses.KW_ONLY
    depth: int = 3
    activation: str = "relu"
    activation_params: object = None
    parameterization: str = "ntk"
    weight_std_bounds: object = (1e-2, 1e2)
    bias_std_bounds: object = (1e-2, 1e2)
    activation_params_bounds: object = "fixed"


for _cls in (NTK, NNGP):
    _cls.__doc__ = _cls.__doc__.format(
        common=_COMMON_PARAMETERS.lstrip(),
        bounds=_BOUNDS_PARAMETERS.lstrip(),
        notes=_NOTES.lstrip(),
        example_data=_EXAMPLE_DATA.lstrip(),
    )
del _cls
