"""Shared parameters, input handling and kernel plumbing of the NTK estimators.

:class:`_BaseNTK` holds what :class:`~sknetk.NTKRegressor` and
:class:`~sknetk.NTKClassifier` share: the declarative parameter constraints,
the one place where the compute device is chosen (:meth:`_compute_device`),
the training kernel (:meth:`_train_kernel`), the solve (:meth:`_solve`) and
the tiled prediction ``K(X, X_fit_) @ dual_coef_`` (:meth:`_kernel_dot`).
A finite training time ``t`` changes only :meth:`_solve` (and the GPU
solve): the dual coefficients come from :func:`sknetk.dynamics.gradient_flow_dual_coef`
instead of the Cholesky solve. ``memory`` changes only where the kernels come
from (:meth:`_train_kernel`, :meth:`_kernel_dot`, :meth:`_kernel_blocks`).
``solver`` is read in one place (:meth:`_choose_solver`); the Nystrom solver
(:mod:`sknetk._nystrom`) keeps its centres in ``X_fit_``, so prediction is
the same ``K(X, X_fit_) @ dual_coef_`` for both solvers.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, _num_samples

from ._array_api import get_namespace, is_numpy_namespace, to_numpy
from ._cache import cached_kernel
from ._device import DEVICES, cupy_or_error, predict_device, use_gpu
from ._nystrom import _is_dask, kernel_block_function, nystrom_fit, nystrom_predict
from ._solver import ALPHA_SCALES, blas_matmul, effective_alpha, solve_kernel_ridge
from .dynamics import gradient_flow_dual_coef
from .kernels import (
    ACTIVATION_NAMES,
    PARAMETERIZATIONS,
    KernelSpec,
    _budget_bytes,
    kernel_matvec,
    nngp_diag,
    nngp_kernel,
    nngp_ntk_kernels,
    ntk_diag,
    ntk_kernel,
)

#: Sparse input is converted to a dense array when it has at most this many
#: entries (rows x columns; 80 MB in float64). Larger sparse input raises a
#: ``TypeError``: the NTK needs dense rows, and silently allocating a huge
#: dense copy would exhaust memory. Prediction densifies sparse input in row
#: blocks of this size, so it accepts sparse input of any number of rows.
SPARSE_DENSIFY_MAX_ENTRIES = 10_000_000

KERNELS = ("ntk", "nngp")

#: Values of the estimators' ``solver`` parameter.
SOLVERS = ("auto", "cholesky", "nystrom")

#: Sparse formats taken as they are; others are converted to CSR (which also
#: checks them for NaN and infinity).
ACCEPT_SPARSE = ("csr", "csc", "coo")

# Parameter documentation shared by the estimators' docstrings (inserted in
# place of the line "    {kernel_params}").
KERNEL_PARAMS_DOC = """
    kernel : {{"ntk", "nngp"}}, default="ntk"
        ``"ntk"``: the Neural Tangent Kernel, i.e. every layer is trained;
        the model is the mean prediction of the infinitely wide network
        trained to convergence by gradient descent on squared loss.
        ``"nngp"``: the NNGP kernel, i.e. only the readout layer is trained
        (equivalently, the posterior mean of the network's Gaussian
        process).

    depth : int, default=3
        Number of hidden ``Dense -> activation`` blocks; a linear readout
        layer follows them.

    activation : str, default="relu"
        Activation of the hidden layers, one of
        ``sknetk.kernels.ACTIVATION_NAMES``: {activations}.

    activation_params : dict, default=None
        Parameters of the activation, e.g. ``{{"alpha": 0.1}}`` for
        ``"leaky_relu"``, ``{{"a": 1.0, "b": 2.0, "c": 0.0}}`` for ``"erf"``
        (``a * erf(b * x) + c``) or ``"sin"``, ``{{"gamma": 0.5}}`` for
        ``"rbf"``. Missing ones take their defaults. ``GridSearchCV`` can
        tune it with a list of dicts.

    weight_std : float, default=1.0
        Standard deviation of every Dense layer's weights (``W_std`` in
        neural-tangents).

    bias_std : float or None, default=0.0
        Standard deviation of the biases (``b_std``). ``None`` means the
        layers have no bias parameter, which differs from ``0.0`` only in
        the ``"standard"`` parameterization.

    parameterization : {{"ntk", "standard"}}, default="ntk"
        Parameterization of the Dense layers, as in neural-tangents.

    width : int, default=None
        Hidden width. Only the ``"standard"`` parameterization's NTK
        depends on it, and it is required there.

    frozen_layers : int, default=0
        Number of leading Dense layers kept at their initialisation (Arora
        et al., 2020): only the later layers and the readout are trained, so
        the NTK keeps only their terms. ``0`` trains every layer;
        ``frozen_layers=depth`` trains the readout alone (in the ``"ntk"``
        parameterization, the NNGP kernel). At most ``depth``, and only with
        ``kernel="ntk"`` (the NNGP already trains the readout alone).

    alpha_scale : {{"absolute", "mean_diag"}}, default="absolute"
        How ``alpha`` is interpreted. ``"absolute"``: the ridge added to the
        kernel's diagonal, as in ``KernelRidge``. ``"mean_diag"``: ``alpha``
        times the mean of the training kernel's diagonal (weighted by
        ``sample_weight``), which is neural-tangents' ``diag_reg`` with its
        default ``trace / n`` scaling. The NTK's scale grows with depth, so
        a relative ridge keeps the same meaning across depths. The value used
        is stored in ``alpha_``.

    t : float, default=None
        Training time of gradient flow on the squared loss, with the learning
        rate folded in (``t = learning_rate * time``); ``None`` trains to
        convergence. The model is then the mean of the infinite ensemble of
        networks trained for time ``t`` from a zero-mean initialisation, with
        the ridge ``alpha_`` added to the kernel, exactly as neural-tangents'
        ``gradient_descent_mse_ensemble``: the loss is averaged over the
        ``N = y.size`` training values, so the residual along the kernel's
        eigenvalue ``a`` (ridge included) decays as ``exp(-a t / N)``. With
        ``sample_weight`` the loss is the weighted mean (``N = sum(w) *
        n_targets``), so that an integer weight equals repeating the row at
        every ``t``. ``t=0`` predicts zero, and ``t=inf`` is the same as
        ``None``. A finite ``t`` costs an eigendecomposition of the training
        kernel instead of a Cholesky factorisation.

    memory : str or object with the joblib.Memory interface, default=None
        Cache of kernel matrices, as in ``Pipeline``: a folder path or a
        :class:`joblib.Memory`. The kernels between the training rows and
        between prediction rows and training rows are then stored, keyed by
        the data and the kernel parameters, so a grid search over parameters
        that do not change the kernel (``alpha``, ``alpha_scale``, ``t``)
        computes each fold's kernels once. Used by the CPU code path only
        (the GPU path never caches); prediction with a cache forms the full
        ``n_test x n_train`` kernel instead of streaming it. Stored kernels
        are read-only: no ``mmap_mode`` lets a fit modify them. The cache is
        a folder of pickles, and loading a pickle runs code, so whoever can
        write it can run code as you: use a private folder (e.g.
        ``tempfile.mkdtemp()``). A folder path that other users could write
        (POSIX) raises ``ValueError`` (a missing folder is created with mode
        ``0o700``); a ``joblib.Memory`` on such a folder is used with a
        warning. A path that is a file or cannot be created raises
        ``ValueError``; a folder that cannot be written, or a corrupted
        entry, gives a warning and the kernel is computed.

    device : {{"auto", "cpu", "gpu"}}, default="auto"
        Where the kernels and the solve run. ``"gpu"`` uses CuPy and a CUDA
        device (the fused kernel and an in-place cuSOLVER Cholesky) and raises
        :class:`~sknetk.exceptions.GPUUnavailableError` saying whether CuPy or
        a device is missing; ``"cpu"`` uses NumPy/SciPy; ``"auto"`` uses the
        GPU when one is available and the kernel matrix has at least 4 million
        entries (``sknetk._device.AUTO_GPU_MIN_ENTRIES``). Fitted attributes
        are NumPy arrays in every case, so a model fitted on a GPU pickles and
        predicts on a machine without CuPy. CuPy inputs are accepted (copied
        to the host for validation); ``predict`` then returns a CuPy array.

    working_memory : float, default=None
        Memory budget in MiB for the temporaries of the tiled kernel
        computations, defaulting to ``sklearn.get_config()["working_memory"]``.
        Prediction streams the test rows through blocks of this size, so it
        never holds the full ``n_test x n_train`` kernel.

    n_jobs : int, default=-1
        Number of threads computing kernel tiles; ``-1`` uses every core.

    solver : {{"auto", "cholesky", "nystrom"}}, default="auto"
        ``"cholesky"``: the exact solver, with the ``n x n`` training kernel
        in memory and O(n^3) time. ``"nystrom"``: kernel ridge restricted to
        ``n_centers`` training rows drawn uniformly (FALKON), solved by
        conjugate gradient with the centres' Cholesky preconditioner while
        the kernel rows are streamed in blocks within ``working_memory``:
        O(n m) time per iteration and no ``n x n`` matrix; with
        ``n_centers >= n_samples`` it equals the exact solver. ``"auto"``:
        the exact solver while the ``n x n`` float64 kernel (``8 n^2``
        bytes) fits ``working_memory`` (on the GPU: 90% of the device's free
        memory, since the GPU fit factorises in place), and for a finite ``t`` or with
        ``memory``; the Nystrom solver beyond and for dask arrays.
        ``verbose`` says which. A finite ``t``, ``memory``,
        ``predict(return_std=True)``, ``return_cov`` and
        ``predict_trajectory`` need the exact kernel, and raise
        ``ValueError`` with ``"nystrom"``. See :ref:`scaling`.

    n_centers : int, default=5000
        Number of Nystrom centres ``m`` (``solver="nystrom"``): O(m^2)
        memory and O(m^3) time for the preconditioner. More centres bring
        the model closer to the exact one.

    max_iter : int, default=100
        Largest number of conjugate-gradient iterations of the Nystrom
        solver; a ``ConvergenceWarning`` says when it is reached first.

    tol : float, default=1e-6
        The Nystrom solver's conjugate gradient stops when every target's
        residual of the preconditioned normal equations is at most ``tol``
        times its initial value.

    random_state : int, RandomState instance or None, default=None
        Seed of the uniform draw of the Nystrom centres; pass an int for
        reproducible fits. The exact solver is deterministic and ignores it.

    verbose : int, default=0
        ``1`` shows a progress bar over the kernel tiles (and prediction row
        blocks) on standard error, tqdm's when it is installed, and prints
        the solver ``"auto"`` chose and the Nystrom solver's strategy and
        conjugate-gradient summary; ``2`` also every iteration.""".format(
    activations=", ".join(f'``"{name}"``' for name in ACTIVATION_NAMES)
)


def _insert_params_doc(cls):
    """Put :data:`KERNEL_PARAMS_DOC` into ``cls.__doc__``."""
    doc = KERNEL_PARAMS_DOC.strip("\n")
    cls.__doc__ = cls.__doc__.replace("    {kernel_params}", doc, 1)
    return cls


def to_host(X):
    """Copy a CuPy array to the host; return ``(X, was_cupy)``.

    scikit-learn's input validation is NumPy based, so estimators validate
    CuPy input on the host; outputs are returned as CuPy again.
    """
    if type(X).__module__.split(".")[0] == "cupy":
        return X.get(), True
    return X, False


def to_input_namespace(result, was_cupy):
    """Return ``result`` as a CuPy array when the input was one."""
    if was_cupy:
        return cupy_or_error().asarray(result)
    return result


def densify(X, *, max_entries=None):
    """Return ``X`` as a dense array, refusing sparse input that is too large.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        Validated input.
    max_entries : int, default=None
        Largest sparse input converted; defaults to
        :data:`SPARSE_DENSIFY_MAX_ENTRIES`.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The dense rows.
    """
    if not sp.issparse(X):
        return X
    if max_entries is None:
        max_entries = SPARSE_DENSIFY_MAX_ENTRIES
    n_entries = X.shape[0] * X.shape[1]
    if n_entries > max_entries:
        raise TypeError(
            f"A sparse X of shape {X.shape} would need {n_entries} dense entries "
            f"({n_entries * 8 / 2**30:.1f} GiB in float64); sknetk densifies sparse "
            f"input only up to SPARSE_DENSIFY_MAX_ENTRIES={max_entries} entries, "
            "because the NTK needs dense rows. Reduce the dimension first (e.g. "
            "TruncatedSVD) or pass a dense array."
        )
    return X.toarray()


def n_rows(X):
    """Number of rows of unvalidated ``X`` (0 when it has none or is invalid).

    Lets ``solver="auto"`` decide before the validation, which copies ``X``
    for the exact solver only; invalid input then fails in the validation.
    """
    try:
        return _num_samples(X)
    except (TypeError, ValueError):
        # TypeError: not array-like; ValueError: a dask array of unknown
        # chunk sizes (only the Nystrom solver takes dask input anyway)
        return 0


def plain_labels(labels):
    """``labels`` as a list of plain Python values, for error messages.

    ``ndarray.tolist()`` keeps NumPy scalars stored in object arrays (and
    pandas gives NumPy scalars too), which print as ``np.int64(1)`` since
    NumPy 2; this prints ``1``.
    """
    return [
        value.item() if isinstance(value, np.generic) else value
        for value in np.asarray(labels, dtype=object).ravel()
    ]


def check_weighted_classes(estimator, Y, classes, sample_weight,
                           weights="sample_weight"):
    """The class rule shared by the classifiers: two classes of positive weight.

    Parameters
    ----------
    estimator : str
        Name of the estimator, for the messages.
    Y : ndarray of shape (n_samples, n_columns)
        ``LabelBinarizer(neg_label=-1).fit_transform(y)``: one column with
        two classes (``+1`` for ``classes[1]``), one per class beyond.
    classes : ndarray of shape (n_classes,)
        The binarizer's ``classes_``.
    sample_weight : ndarray of shape (n_samples,) or None
        The final weights (``class_weight`` already multiplied in).
    weights : str, default="sample_weight"
        What made the weights, for the messages.

    Raises ``ValueError`` when fewer than two classes have a positive total
    weight (the one-vs-all targets would then be constant and every
    prediction the same class), and warns (``UserWarning``) about classes of
    zero total weight in a fit that still has two or more: their targets are
    ``-1`` on every weighted sample, so they are (almost) never predicted.
    """
    n_classes = len(classes)
    Y = np.asarray(Y).reshape(Y.shape[0], -1)
    if n_classes > 2:
        codes = np.argmax(Y, axis=1)
    elif n_classes == 2:
        codes = (Y[:, 0] > 0).astype(np.intp)
    else:
        codes = np.zeros(Y.shape[0], dtype=np.intp)
    totals = np.bincount(codes, weights=sample_weight, minlength=n_classes)
    empty = totals <= 0
    n_present = int(np.sum(~empty))
    labels = plain_labels(classes)
    if n_present < 2:
        weighted = "" if sample_weight is None else f" (by {weights})"
        raise ValueError(
            f"{estimator} needs samples of at least two classes with positive "
            f"weight; got {n_present} class(es) of positive total weight"
            f"{weighted} among the labels {labels}."
        )
    if np.any(empty):
        warnings.warn(
            f"{estimator}: the class(es) {[labels[i] for i in np.flatnonzero(empty)]} "
            f"have zero total weight (by {weights}): their one-vs-all targets "
            "are -1 on every weighted sample, so they are (almost) never "
            "predicted.",
            UserWarning,
            stacklevel=4,
        )


def check_regression_targets(y):
    """``y`` as finite float64 regression targets, before any kernel work.

    ``y`` has passed scikit-learn's validation (``validate_data`` with
    ``y_numeric=True``, which converts object arrays only). As for
    ``Ridge`` and ``KernelRidge``, numeric strings (``"1.5"``) and booleans
    are converted to float64; anything else raises a ``ValueError`` naming
    ``y`` and a bad value, as do NaN and infinity (``"nan"`` included).
    """
    if sp.issparse(y):
        raise TypeError(
            "A sparse y is not supported: pass y.toarray() (regression "
            "targets are dense, one column per target)."
        )
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(
            f"y must be 1-D (n_samples,) or 2-D (n_samples, n_targets), got "
            f"shape {y.shape}."
        )
    if np.issubdtype(y.dtype, np.complexfloating):
        raise ValueError(f"y must hold real numbers, got dtype {y.dtype}.")
    try:
        out = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        bad = next(
            (v for v in y.ravel().tolist() if not _is_float_like(v)), None
        )
        raise ValueError(
            f"y must hold numbers for regression; got dtype {y.dtype} with "
            f"the non-numeric value {bad!r}. For class labels use a "
            "classifier (e.g. NTKClassifier)."
        ) from exc
    if not np.isfinite(out).all():
        raise ValueError("Input y contains NaN or infinity.")
    return out


def _is_float_like(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _known_dask_rows(X):
    """A dask ``X`` with known chunk sizes (computing them when unknown).

    Boolean indexing (``X[X[:, 0] > 0]``) leaves the chunk sizes unknown
    (NaN); the fit needs the number of rows, so the sizes are computed, which
    evaluates ``X``'s graph once more.
    """
    if any(math.isnan(size) for sizes in X.chunks for size in sizes):
        X = X.compute_chunk_sizes()
    return X


def check_dask_X(X):
    """Shape and dtype checks of a dask ``X`` (fit and predict; stays lazy).

    Real numbers and booleans are accepted (cast to float64 later, as
    scikit-learn casts NumPy input); anything else raises ``ValueError``.
    """
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D dask array for X, got shape {X.shape}."
        )
    if X.dtype != np.bool_ and (
        not np.issubdtype(X.dtype, np.number)
        or np.issubdtype(X.dtype, np.complexfloating)
    ):
        raise ValueError(
            f"X must hold real numbers (or booleans), got dtype {X.dtype}."
        )


def validate_dask_fit(estimator, X, y):
    """Light validation of a dask ``X`` (chunked by rows) for fit.

    ``X`` stays lazy: it is cast to float64 (booleans included), rechunked
    to one chunk over the features, and checked for NaN and infinity in one
    pass on the cluster; unknown chunk sizes (after boolean indexing) are
    computed first. ``y`` is brought to the client as NumPy (``n_samples``
    values per target). Sets ``n_features_in_`` (dask arrays have no feature
    names).
    """
    import dask.array as da

    check_dask_X(X)
    X = _known_dask_rows(X)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"Found array with shape {X.shape}: at least one sample and one "
            "feature are required."
        )
    X = X.astype(np.float64).rechunk({1: -1})
    y = np.asarray(y.compute() if isinstance(y, da.Array) else y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y has {y.shape[0]} rows but X has {X.shape[0]}; they must match."
        )
    if not bool(da.isfinite(X).all().compute()):
        raise ValueError("Input X contains NaN or infinity.")
    estimator.n_features_in_ = X.shape[1]
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return X, y


def check_fit_sample_weight(sample_weight, X):
    """Validate ``sample_weight`` for fit: finite, non-negative, not all zero.

    Returns ``None`` when ``sample_weight`` is ``None``, else a float64 array
    of shape ``(n_samples,)``.
    """
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if not np.isfinite(sample_weight).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    return sample_weight


def _time_scale(sample_weight):
    """Learning-rate factor that makes the weighted loss a weighted *mean*.

    The functions of :mod:`sknetk.dynamics` divide the (weighted) squared
    loss by ``N = n_samples * n_targets``, as neural-tangents does without
    weights. The estimators divide by ``sum(w) * n_targets`` instead, so that
    an integer weight is the same as repeating the row and a zero weight the
    same as removing it, at every training time: the factor is
    ``n_samples / sum(w)`` (1 without weights).
    """
    if sample_weight is None:
        return 1.0
    return float(len(sample_weight) / np.sum(sample_weight))


def check_finite_prediction(out):
    """Return ``out`` (NumPy), or raise when the test kernel overflowed."""
    if not np.isfinite(out).all():
        raise ValueError(
            "The kernel between X and the training data overflows float64 "
            "(NaN or infinity): the rows of X are too large in magnitude. "
            "Scale the features (e.g. StandardScaler) before the estimator."
        )
    return out


def _check_finite_kernel(K):
    """Refuse a kernel with NaN or infinity (as :func:`solve_kernel_ridge` does)."""
    xp = get_namespace(K)
    if not bool(xp.all(xp.isfinite(K))):
        raise ValueError(
            "The kernel matrix contains NaN or infinity (are the inputs too "
            "large in magnitude for float64?). Scale the features (e.g. "
            "StandardScaler) before the estimator."
        )


class _BaseNTK(BaseEstimator):
    """Kernel ridge regression with an infinite-width network kernel (base).

    Subclasses define ``__init__`` with the parameters of
    ``_parameter_constraints`` (plus their own) and call
    :meth:`_fit_kernel_ridge` and :meth:`_kernel_dot`.
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "frozen_layers": [Interval(Integral, 0, None, closed="left")],
        "t": [Interval(Real, 0, None, closed="both"), None],
        "memory": [None, str, HasMethods(["cache"])],
        "kernel": [StrOptions(set(KERNELS))],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATION_NAMES))],
        "activation_params": [dict, None],
        "weight_std": [Interval(Real, 0, None, closed="left")],
        "bias_std": [Interval(Real, 0, None, closed="left"), None],
        "parameterization": [StrOptions(set(PARAMETERIZATIONS))],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "alpha_scale": [StrOptions(set(ALPHA_SCALES))],
        "device": [StrOptions(set(DEVICES))],
        "working_memory": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
        "solver": [StrOptions(set(SOLVERS))],
        "n_centers": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # -- kernel parameters ---------------------------------------------------
    def _kernel_params(self):
        """Keyword arguments describing the network, for ``sknetk.kernels``."""
        return dict(
            depth=self.depth,
            activation=self.activation,
            activation_params=self.activation_params,
            weight_std=self.weight_std,
            bias_std=self.bias_std,
            parameterization=self.parameterization,
            width=self.width,
            frozen_layers=self.frozen_layers,
        )

    def _params_for(self, kernel):
        """:meth:`_kernel_params` for ``kernel`` ("ntk" or "nngp").

        The NNGP does not depend on ``frozen_layers`` (it is the covariance
        of the untrained network), so the NNGP blocks an NTK model needs for
        its uncertainty are computed (and cached) with ``frozen_layers=0``.
        """
        params = self._kernel_params()
        if kernel == "nngp":
            params["frozen_layers"] = 0
        return params

    def _check_kernel_params(self):
        """Checks beyond the declarative constraints (raise ``ValueError``).

        Unknown activation parameters, non-finite values,
        ``parameterization="standard"`` without ``width``, ``frozen_layers``
        above ``depth``, and ``frozen_layers`` with ``kernel="nngp"``.
        """
        KernelSpec.from_params(**self._kernel_params())
        if self.kernel == "nngp" and self.frozen_layers:
            raise ValueError(
                'frozen_layers applies to kernel="ntk" only (the NNGP already '
                f"trains the readout alone); got frozen_layers={self.frozen_layers!r}. "
                'Use kernel="ntk" with frozen_layers=depth for the readout-only NTK.'
            )

    def _flow_time(self):
        """The finite training time ``t`` as a float, or None when converged."""
        if self.t is None or math.isinf(self.t):
            return None
        return float(self.t)

    def _compute_device(self, n_entries, *, predict=False):
        """Where this fit or prediction runs: the one place that reads ``device``.

        Parameters
        ----------
        n_entries : int
            Entries of the kernel matrix the call computes; ``device="auto"``
            uses the GPU when CuPy and a device are present and
            ``n_entries >= sknetk._device.AUTO_GPU_MIN_ENTRIES``.
        predict : bool, default=False
            True for the computations of a fitted model (prediction,
            uncertainty, trajectories): ``device="gpu"`` then runs on the CPU,
            with a warning, where no GPU is usable
            (:func:`sknetk._device.predict_device`), so that a model fitted
            on a GPU predicts anywhere.

        Returns
        -------
        device : {"cpu", "gpu"}
            ``device="gpu"`` raises
            :class:`~sknetk.exceptions.GPUUnavailableError` saying what is
            missing when CuPy or a CUDA device is absent.
        """
        device = predict_device(self.device) if predict else self.device
        return "gpu" if use_gpu(device, n_entries) else "cpu"

    # -- fit -----------------------------------------------------------------
    def _train_kernel(self, X):
        """Training kernel ``K(X, X)`` on the CPU, float64, shape (n, n).

        With ``memory``, it is loaded from the cache when the same data and
        kernel parameters were seen before. The returned array is a private,
        writable one (:meth:`_solve` overwrites it): a cached kernel is
        read-only, so it is copied, and the cache file is never written.
        """
        if self.memory is not None:
            K = cached_kernel(
                self.memory,
                X,
                kernel=self.kernel,
                **self._kernel_params(),
                working_memory=self.working_memory,
                n_jobs=self.n_jobs,
                device="cpu",
            )
            # read-only (a memory map of the cache file on a hit): copied
            return np.require(np.asarray(K), dtype=np.float64, requirements=["W"])
        function = ntk_kernel if self.kernel == "ntk" else nngp_kernel
        return function(
            X,
            **self._kernel_params(),
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
            device="cpu",
            verbose=self.verbose,
        )

    def _solve(self, K, y, sample_weight):
        """Set ``alpha_`` and return the dual coefficients; may overwrite ``K``.

        Converged (``t=None``): the Cholesky solve of ``K + alpha_ I``. A
        finite ``t``: :func:`~sknetk.dynamics.gradient_flow_dual_coef`, from
        one eigendecomposition of the (weighted) kernel.
        """
        diag = np.diagonal(K).copy() if self.alpha_scale == "mean_diag" else None
        self.alpha_ = effective_alpha(self.alpha, self.alpha_scale, diag, sample_weight)
        t = self._flow_time()
        if t is None:
            return solve_kernel_ridge(
                K, y, self.alpha_, sample_weight, overwrite_K=True
            )
        _check_finite_kernel(K)
        return gradient_flow_dual_coef(
            K, y, t=t, ridge=self.alpha_, learning_rate=_time_scale(sample_weight),
            sample_weight=sample_weight,
        )

    def _choose_solver(self, n_samples, dask_input=False):
        """``"cholesky"`` or ``"nystrom"`` for this fit: the one reader of ``solver``.

        Called before the input validation, which copies ``X`` for the exact
        solver only (the Nystrom solver reads ``X`` block by block, so a
        memmap is never loaded whole). Raises ``ValueError`` for the
        combinations that cannot work: dask input with ``"cholesky"``, and a
        finite ``t`` or ``memory`` (which need the exact kernel) with
        ``"nystrom"`` or dask input.
        """
        exact_only = [
            name
            for name, value in (
                ("a finite t", self._flow_time()),
                ("memory", self.memory),
            )
            if value is not None
        ]
        exact_only = " and ".join(exact_only)
        if self.solver == "cholesky":
            if dask_input:
                raise ValueError(
                    'solver="cholesky" needs the n x n kernel in one process; '
                    'fit dask arrays with solver="nystrom" or "auto".'
                )
            return "cholesky"
        if self.solver == "nystrom" or dask_input:
            if exact_only:
                raise ValueError(
                    f"The Nystrom solver cannot fit with {exact_only}, which "
                    'needs the exact training kernel: use solver="cholesky" '
                    '(or "auto") on NumPy input, or set t=None and memory=None.'
                )
            return "nystrom"
        need = 8 * n_samples**2
        if self._compute_device(n_samples**2) == "gpu":
            # On the GPU the exact fit factorises in place: one n x n matrix
            # of device memory, judged against what the device has free.
            from ._cuda import free_device_memory

            budget, where = 0.9 * free_device_memory(), "free GPU memory"
        else:
            budget, where = _budget_bytes(self.working_memory), "working_memory"
        if exact_only:
            solver, why = "cholesky", f"{exact_only} needs the exact kernel"
        elif need <= budget:
            solver, why = "cholesky", "it fits"
        else:
            solver, why = "nystrom", "it does not fit"
        if self.verbose:
            print(
                f"[{type(self).__name__}] solver='auto': the {n_samples} x "
                f"{n_samples} kernel needs {need / 2**20:.1f} MiB and "
                f"{where} is {budget / 2**20:.1f} MiB; {why}: "
                f"using {solver!r}."
            )
        return solver

    def _nystrom_kernel_fn(self, device):
        """Picklable ``kernel_fn(A, B=None)`` for :mod:`sknetk._nystrom`."""
        return kernel_block_function(
            self.kernel,
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
            device=device,
            **self._kernel_params(),
        )

    def _train_diag(self, X):
        """``K(x, x)`` of the training rows in O(n), by row blocks (memmap, dask)."""
        function = ntk_diag if self.kernel == "ntk" else nngp_diag
        params = self._kernel_params()
        if _is_dask(X):
            return np.asarray(
                X.map_blocks(
                    function, drop_axis=1, dtype=np.float64, **params
                ).compute()
            )
        rows = max(1, int(_budget_bytes(self.working_memory) // (16 * X.shape[1])))
        parts = [
            to_numpy(function(np.asarray(X[i : i + rows]), **params))
            for i in range(0, X.shape[0], rows)
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _fit_nystrom(self, X, y, sample_weight):
        """Nystrom + preconditioned CG (:mod:`sknetk._nystrom`); NumPy attributes.

        Only the centres are kept: ``X_fit_`` holds them and the prediction
        ``K(X, X_fit_) @ dual_coef_`` of :meth:`_kernel_dot` is unchanged.
        On the GPU, ``X`` (``n x d``) is copied to the device and every block,
        factor and CG vector stays there; dask input runs its row blocks on
        the current cluster, each worker choosing its device from ``device``.
        """
        diag = self._train_diag(X) if self.alpha_scale == "mean_diag" else None
        self.alpha_ = effective_alpha(self.alpha, self.alpha_scale, diag, sample_weight)
        if _is_dask(X):
            device = self.device
        else:
            n_entries = X.shape[0] * min(self.n_centers, X.shape[0])
            device = self._compute_device(n_entries)
        cupy = cupy_or_error() if device == "gpu" and not _is_dask(X) else None
        if cupy is not None:
            # On the device, the kernel of CuPy input runs there ("auto").
            X, device = cupy.asarray(X), "auto"
        try:
            centers, coef, n_iter, info = nystrom_fit(
                X,
                y,
                kernel_fn=self._nystrom_kernel_fn(device),
                n_centers=self.n_centers,
                alpha=self.alpha_,
                max_iter=self.max_iter,
                tol=self.tol,
                random_state=self.random_state,
                working_memory=self.working_memory,
                sample_weight=sample_weight,
                verbose=self.verbose,
            )
            self.X_fit_ = np.asarray(to_numpy(centers), dtype=np.float64)
            self.dual_coef_ = to_numpy(coef)
            # the ridge used: alpha_, floored for degenerate centres
            self.alpha_ = float(info["alpha"])
        finally:
            if cupy is not None:
                cupy.get_default_memory_pool().free_all_blocks()
        self.n_iter_ = n_iter
        return self

    def _fit_kernel_ridge(self, X, y, sample_weight, solver="cholesky"):
        """Fit on validated ``X``, float64 ``y`` and validated weights.

        ``solver`` is what :meth:`_choose_solver` returned. The exact solver
        needs a dense in-memory ``X``; the Nystrom solver also takes a
        memmap or a dask array.
        """
        self._check_kernel_params()
        self.solver_ = solver
        if solver == "nystrom":
            return self._fit_nystrom(X, y, sample_weight)
        self.n_iter_ = 1
        if self._compute_device(X.shape[0] ** 2) == "gpu":
            self.dual_coef_ = self._fit_gpu(X, y, sample_weight)
        else:
            K = self._train_kernel(X)
            self.dual_coef_ = self._solve(K, y, sample_weight)
        self.X_fit_ = X
        return self

    def _fit_gpu(self, X, y, sample_weight):
        """Kernel and solve on the GPU; returns NumPy dual coefficients.

        The kernel is built on the device by the fused kernel and factorised
        in place by cuSOLVER (one n x n matrix of device memory); on failure
        the solve warns and falls back to an eigendecomposition. The fitted
        attributes stay NumPy arrays so the model pickles and predicts without
        CuPy. CuPy's pool blocks are released after the fit.

        A finite ``t`` runs :func:`~sknetk.dynamics.gradient_flow_dual_coef`
        on the CuPy kernel (cuSOLVER ``syevd``): the same array-API code as on
        the CPU, with about four ``n x n`` matrices of device memory (the
        kernel, its symmetrised copy, the eigenvectors and the solver's
        workspace) instead of one.
        """
        from ._gpu_solve import solve_ridge_gpu

        cupy = cupy_or_error()
        function = ntk_kernel if self.kernel == "ntk" else nngp_kernel
        Xg = cupy.asarray(X)
        if self._flow_time() is not None:
            return self._fit_gpu_flow(cupy, function, Xg, y, sample_weight)
        sqrt_sw = None if sample_weight is None else np.sqrt(sample_weight)

        def make_kernel():
            K = function(
                Xg,
                **self._kernel_params(),
                working_memory=self.working_memory,
                device="gpu",
            )
            if sqrt_sw is not None:
                w = cupy.asarray(sqrt_sw)
                K *= w[:, None]
                K *= w[None, :]
            return K

        first = [make_kernel()]
        diag = None
        if self.alpha_scale == "mean_diag":
            diag = cupy.asnumpy(first[0].diagonal())
            if sqrt_sw is not None:
                diag = diag / np.where(sample_weight > 0, sample_weight, 1.0)
        self.alpha_ = effective_alpha(self.alpha, self.alpha_scale, diag, sample_weight)

        def kernel_once():
            return first.pop() if first else make_kernel()

        Y = y if sqrt_sw is None else y * (sqrt_sw if y.ndim == 1 else sqrt_sw[:, None])
        try:
            dual = solve_ridge_gpu(kernel_once, cupy.asarray(Y), self.alpha_)
            if sqrt_sw is not None:
                w = cupy.asarray(sqrt_sw)
                dual = dual * (w if dual.ndim == 1 else w[:, None])
            return cupy.asnumpy(dual)
        finally:
            first.clear()
            cupy.get_default_memory_pool().free_all_blocks()

    def _fit_gpu_flow(self, cupy, function, Xg, y, sample_weight):
        """Finite-time dual coefficients on the GPU (see :meth:`_fit_gpu`)."""
        K = function(
            Xg, **self._kernel_params(), working_memory=self.working_memory,
            device="gpu",
        )
        try:
            diag = None
            if self.alpha_scale == "mean_diag":
                diag = cupy.asnumpy(K.diagonal())
            self.alpha_ = effective_alpha(
                self.alpha, self.alpha_scale, diag, sample_weight
            )
            _check_finite_kernel(K)
            w = None if sample_weight is None else cupy.asarray(sample_weight)
            dual = gradient_flow_dual_coef(
                K, cupy.asarray(y), t=self._flow_time(), ridge=self.alpha_,
                learning_rate=_time_scale(sample_weight), sample_weight=w,
            )
            return cupy.asnumpy(dual)
        finally:
            del K
            cupy.get_default_memory_pool().free_all_blocks()

    # -- predict -------------------------------------------------------------
    def _check_exact(self, what):
        """Raise when ``what`` needs the exact solver and the fit was Nystrom."""
        if getattr(self, "solver_", "cholesky") == "nystrom":
            raise ValueError(
                f"{what} needs the exact training kernel, but this model was "
                'fitted by the Nystrom solver: refit with solver="cholesky".'
            )

    def _dask_kernel_dot(self, X):
        """Lazy ``K(X, X_fit_) @ dual_coef_`` for a dask ``X``: a dask array.

        Each row chunk is one task on the current cluster; the result has
        ``X``'s row chunks and nothing is computed until asked (unknown row
        chunk sizes stay unknown). Booleans are cast to float64.
        """
        check_dask_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return nystrom_predict(
            X.astype(np.float64).rechunk({1: -1}),
            self.X_fit_,
            self.dual_coef_,
            self._nystrom_kernel_fn(predict_device(self.device)),
        )

    def _kernel_dot(self, X, coef=None):
        """``K(X, X_fit_) @ coef``, streamed over row blocks of ``X``.

        ``X`` is validated (dense or sparse). Sparse rows are densified one
        block at a time. ``coef`` (NumPy, ``(n_train,)`` or
        ``(n_train, k)``) defaults to ``dual_coef_``. With ``memory`` on the
        CPU, the whole ``K(X, X_fit_)`` is taken from (or put in) the cache.
        """
        if coef is None:
            coef = self.dual_coef_
        if sp.issparse(X):
            rows = max(1, SPARSE_DENSIFY_MAX_ENTRIES // max(X.shape[1], 1))
            X = X.tocsr()
            parts = [
                self._kernel_dot(X[i : i + rows].toarray(), coef)
                for i in range(0, X.shape[0], rows)
            ]
            if parts:
                return np.concatenate(parts, axis=0)
            return np.zeros((0,) + coef.shape[1:])
        device = self._compute_device(X.shape[0] * self.X_fit_.shape[0],
                                      predict=True)
        if device == "gpu":
            cupy = cupy_or_error()
            out = kernel_matvec(
                cupy.asarray(X),
                cupy.asarray(self.X_fit_),
                cupy.asarray(coef),
                kernel=self.kernel,
                **self._kernel_params(),
                working_memory=self.working_memory,
                device="gpu",
            )
            out = cupy.asnumpy(out)
        elif self.memory is not None:
            K = cached_kernel(
                self.memory,
                X,
                self.X_fit_,
                kernel=self.kernel,
                **self._kernel_params(),
                working_memory=self.working_memory,
                n_jobs=self.n_jobs,
                device="cpu",
            )
            out = blas_matmul(K, np.asarray(coef, dtype=np.float64))
        else:
            out = kernel_matvec(
                X,
                self.X_fit_,
                coef,
                kernel=self.kernel,
                **self._kernel_params(),
                working_memory=self.working_memory,
                n_jobs=self.n_jobs,
                device="cpu",
                verbose=self.verbose,
            )
        return check_finite_prediction(out)

    # -- dense linear algebra at predict time ------------------------------
    def _device_converter(self, n_entries):
        """``(asarray, device)`` for the dense linear algebra of one call.

        ``asarray`` moves NumPy arrays to where the work runs (CuPy on the
        GPU, chosen by :meth:`_compute_device` as for fitting) and
        ``device`` is the value to pass to the kernel functions. The code
        using it is array-API generic (tests run it on ``array_api_strict``
        by replacing this method).
        """
        if self._compute_device(n_entries, predict=True) == "gpu":
            return cupy_or_error().asarray, "gpu"
        return np.asarray, "cpu"

    def _kernel_blocks(self, A, B, kernels, device):
        """``{name: K_name(A, B)}`` for ``name`` in ``kernels`` (``B=None``: A, A).

        Both kernels come from one pass of the recursion, or, with
        ``memory`` and NumPy arrays, each from the cache.
        """
        common = dict(working_memory=self.working_memory, n_jobs=self.n_jobs,
                      device=device)
        numpy_in = is_numpy_namespace(get_namespace(A, B))
        if len(kernels) == 1 or (self.memory is not None and numpy_in):
            return {
                name: cached_kernel(
                    self.memory if numpy_in else None, A, B, kernel=name,
                    **self._params_for(name), **common,
                )
                for name in kernels
            }
        nngp, ntk = nngp_ntk_kernels(A, B, **self._kernel_params(), **common)
        return {"nngp": nngp, "ntk": ntk}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
