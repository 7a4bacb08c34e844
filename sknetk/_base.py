"""Shared parameters, input handling and kernel plumbing of the NTK estimators.

:class:`_BaseNTK` holds what :class:`~sknetk.NTKRegressor` and
:class:`~sknetk.NTKClassifier` share: the declarative parameter constraints,
the one reader of ``device`` (:meth:`_device_setting`, resolved into an
execution context by :meth:`_context`), the fit through the solver registry
of :mod:`sknetk._solvers` (:meth:`_fit_kernel_ridge`) and the tiled
prediction ``K(X, X_fit_) @ dual_coef_`` (:func:`kernel_dot`), and the
decorator :func:`mirrors_input`, the one place where CuPy input is copied to
the host and the outputs returned as CuPy. Every solver
keeps the rows its prediction needs in ``X_fit_`` (the Nystrom solver its
centres), so prediction is the same for all of them.
"""

import contextlib
import dataclasses
import functools
import math
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight, _num_samples
from threadpoolctl import threadpool_limits

from ._array_api import get_namespace, is_numpy_namespace
from ._cache import cached_kernel
from ._device import cupy_or_error, predict_device, use_gpu
from ._nystrom import nystrom_predict
from ._params import NETWORK, constraints, fill_doc, param_fields
from ._solver import blas_matmul
from ._solvers import (
    SOLVERS,
    ExecutionContext,
    Kernel,
    Ridge,
    choose_solver,
    flow_time,
    is_dask,
    kernel_entries,
    solver_key,
)
from .kernels import (
    KernelSpec,
    nngp_diag,
    nngp_kernel,
    ntk_diag,
    ntk_kernel,
    spec_kernels,
    spec_matvec,
)

#: Sparse input is converted to a dense array when it has at most this many
#: entries (rows x columns; 80 MB in float64). Larger sparse input raises a
#: ``TypeError``: the NTK needs dense rows, and silently allocating a huge
#: dense copy would exhaust memory. Prediction densifies sparse input in row
#: blocks of this size, so it accepts sparse input of any number of rows.
SPARSE_DENSIFY_MAX_ENTRIES = 10_000_000

#: Sparse formats taken as they are; others are converted to CSR (which also
#: checks them for NaN and infinity).
ACCEPT_SPARSE = ("csr", "csc", "coo")

#: The estimators' parameters from the table of :mod:`sknetk._params`, in
#: their docstrings' order (after ``alpha`` and the estimator's own).
ESTIMATOR_PARAMS = (
    ("kernel",)
    + NETWORK
    + ("alpha_scale", "t", "memory", "device", "working_memory", "n_jobs")
    + ("solver", "n_centers", "max_iter", "tol", "random_state", "verbose")
)


def insert_params_doc(cls):
    """Put the shared parameters' documentation in place of the line
    ``{kernel_params}`` of ``cls.__doc__``."""
    return fill_doc(
        ESTIMATOR_PARAMS, "estimator", blank_lines=True, placeholder="kernel_params"
    )(cls)


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


def blas_threads(n_jobs):
    """Context bounding the BLAS threads by a positive ``n_jobs``.

    ``None`` or a negative ``n_jobs`` (every core) leaves BLAS as it is.
    """
    if n_jobs is None or n_jobs < 0:
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(int(n_jobs), 1), user_api="blas")


def mirrors_input(method=None, *, output=True):
    """Decorator of ``method(self, X, *args, **kwargs)``: input and output mirroring.

    The one place where estimator methods meet CuPy input: every CuPy argument
    is copied to the host (scikit-learn's validation is NumPy based) and, when
    ``X`` was a CuPy array and ``output`` is true, the array results (one
    array or a tuple of them) are returned as CuPy arrays. ``self`` is
    returned as it is (``fit``). ``@mirrors_input(output=False)`` leaves the
    results on the host (class labels: CuPy holds no strings).
    The method runs with the BLAS threads bounded by a positive ``n_jobs`` of
    the estimator (:func:`blas_threads`), so that ``n_jobs=1`` means one
    thread for the kernel tiles and for the linear algebra alike.
    """
    if method is None:
        return functools.partial(mirrors_input, output=output)

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        X, was_cupy = to_host(X)
        args = [to_host(value)[0] for value in args]
        kwargs = {key: to_host(value)[0] for key, value in kwargs.items()}
        with blas_threads(getattr(self, "n_jobs", None)):
            out = method(self, X, *args, **kwargs)
        if not (was_cupy and output) or out is self:
            return out
        if isinstance(out, tuple):
            return tuple(to_input_namespace(part, True) for part in out)
        return to_input_namespace(out, True)

    return wrapper


def device_setting(estimator, predict=False):
    """The estimator's ``device`` parameter, as a fitted model uses it.

    The one reader of ``device`` in the package (the dense, the image and the
    search estimators all resolve it here). With ``predict=True``
    (prediction, uncertainty, trajectories), ``device="gpu"`` becomes the
    CPU, with a warning, where no GPU is usable
    (:func:`sknetk._device.predict_device`), so that a model fitted on a GPU
    predicts anywhere.
    """
    return predict_device(estimator.device) if predict else estimator.device


def compute_device(estimator, n_entries, *, predict=False):
    """``"cpu"`` or ``"gpu"`` for a call computing ``n_entries`` kernel entries.

    ``device="auto"`` uses the GPU when CuPy and a device are present and
    ``n_entries >= sknetk._device.AUTO_GPU_MIN_ENTRIES``; ``device="gpu"``
    raises :class:`~sknetk.exceptions.GPUUnavailableError` saying what is
    missing (at fit time; see :func:`device_setting` for prediction).
    """
    return "gpu" if use_gpu(device_setting(estimator, predict), n_entries) else "cpu"


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


def check_weighted_classes(
    estimator, Y, classes, sample_weight, weights="sample_weight"
):
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
        bad = next((v for v in y.ravel().tolist() if not _is_float_like(v)), None)
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
        raise ValueError(f"Expected a 2-D dask array for X, got shape {X.shape}.")
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


def check_finite_prediction(out):
    """Return ``out`` (NumPy), or raise when the test kernel overflowed."""
    if not np.isfinite(out).all():
        raise ValueError(
            "The kernel between X and the training data overflows float64 "
            "(NaN or infinity): the rows of X are too large in magnitude. "
            "Scale the features (e.g. StandardScaler) before the estimator."
        )
    return out


class _BaseNTK(
    BaseEstimator, param_fields("EstimatorParams", ESTIMATOR_PARAMS, "estimator")
):
    """Kernel ridge regression with an infinite-width network kernel (base).

    The parameters of :data:`ESTIMATOR_PARAMS` are dataclass fields of this
    base (:func:`~sknetk._params.param_fields`); subclasses are
    :func:`~sknetk._params.estimator_dataclass` es that declare their own
    parameters (``alpha`` first, the others keyword-only), choose the solver with
    :meth:`_choose_solver` before validating the input, then call
    :meth:`_fit_kernel_ridge` and :meth:`_kernel_dot`. The solvers themselves
    live in :mod:`sknetk._solvers`.
    """

    _parameter_constraints: dict = constraints(
        ("alpha",) + ESTIMATOR_PARAMS, "estimator"
    )

    # -- kernel parameters ---------------------------------------------------
    def _kernel_params(self):
        """Keyword arguments describing the network, for ``sknetk.kernels``."""
        return {name: getattr(self, name) for name in NETWORK}

    def _params_for(self, kernel):
        """:meth:`_kernel_params` for ``kernel`` ("ntk" or "nngp"): those of
        :meth:`_spec` (the NNGP blocks an NTK model needs for its uncertainty
        are computed, and cached, as the NNGP's)."""
        return self._spec(kernel).params()

    def _spec(self, kernel=None):
        """The :class:`~sknetk.kernels.KernelSpec` of ``kernel`` (default:
        the model's), validated (:meth:`KernelSpec.for_kernel`)."""
        kernel = self.kernel if kernel is None else kernel
        spec = KernelSpec.from_params(**self._kernel_params(), ntk=kernel == "ntk")
        return spec.for_kernel(kernel)

    def _kernel(self):
        """The :class:`~sknetk._solvers.Kernel` of this model."""
        ntk = self.kernel == "ntk"
        return Kernel(
            self.kernel,
            self._kernel_params(),
            ntk_kernel if ntk else nngp_kernel,
            ntk_diag if ntk else nngp_diag,
        )

    def _check_kernel_params(self):
        """Checks beyond the declarative constraints (raise ``ValueError``):
        those of :meth:`KernelSpec.from_params` and, strictly,
        :meth:`KernelSpec.for_kernel`."""
        spec = KernelSpec.from_params(**self._kernel_params(), ntk=self.kernel == "ntk")
        spec.for_kernel(self.kernel, strict=True)

    def _flow_time(self):
        """The finite training time ``t`` as a float, or None when converged."""
        return flow_time(self.t)

    # -- where the work runs -------------------------------------------------
    def _device_setting(self, predict=False):
        """``device`` as a fitted model uses it (:func:`device_setting`)."""
        return device_setting(self, predict)

    def _compute_device(self, n_entries, *, predict=False):
        """``"cpu"`` or ``"gpu"`` for ``n_entries`` entries (:func:`compute_device`)."""
        return compute_device(self, n_entries, predict=predict)

    def _context(self, n_entries, *, predict=False, dask_input=False):
        """The :class:`~sknetk._solvers.ExecutionContext` of one fit or prediction.

        Dask input keeps the ``device`` setting: each worker chooses its
        device from it.
        """
        if dask_input:
            device, cupy = self._device_setting(predict), None
        else:
            device = (
                self._compute_device(n_entries, predict=True)
                if predict
                else self._compute_device(n_entries)
            )
            cupy = cupy_or_error() if device == "gpu" else None
        return ExecutionContext(
            device=device,
            cupy=cupy,
            working_memory=self.working_memory,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            memory=self.memory,
            random_state=self.random_state,
            n_centers=self.n_centers,
            max_iter=self.max_iter,
            tol=self.tol,
        )

    # -- fit -----------------------------------------------------------------
    def _choose_solver(self, n_samples, dask_input=False):
        """``"cholesky"`` or ``"nystrom"`` for this fit (:func:`choose_solver`).

        Called before the input validation, which copies ``X`` for the exact
        solver only.
        """
        return choose_solver(
            self.solver,
            n_samples,
            dask_input=dask_input,
            t=self.t,
            memory=self.memory,
            device_of=self._compute_device,
            working_memory=self.working_memory,
            verbose=self.verbose,
            name=type(self).__name__,
        )

    def _fit_kernel_ridge(self, X, y, sample_weight, solver, *, loo=False):
        """Fit on validated ``X``, float64 ``y`` and validated weights.

        ``solver`` is what :meth:`_choose_solver` returned; the exact solvers
        need a dense in-memory ``X``, the Nystrom solver also takes a memmap
        or a dask array. The fitted attributes are NumPy arrays. ``loo=True``
        asks the solver for the leave-one-out values of the fit from its own
        factor (``FitResult.loo``; None where the solver has none). Returns
        the solver's :class:`~sknetk._solvers.FitResult`.
        """
        self._check_kernel_params()
        fit = self._solve(X, y, sample_weight, solver, self._flow_time(), loo=loo)
        # The exact solvers keep the validated rows: the model owns a copy.
        X_fit = np.array(X, copy=True) if fit.X_fit is X else fit.X_fit
        self.X_fit_, self.dual_coef_, self.alpha_ = X_fit, fit.dual_coef, fit.alpha
        self.solver_, self.n_iter_ = fit.solver, fit.n_iter
        return fit

    def _solve(self, X, y, sample_weight, solver, t, *, loo=False):
        """The :class:`~sknetk._solvers.FitResult` of the registry's solver."""
        n_entries = kernel_entries(solver, X.shape[0], self.n_centers)
        context = self._context(n_entries, dask_input=is_dask(X))
        if loo:
            context = dataclasses.replace(context, loo=True)
        ridge = Ridge(self.alpha, self.alpha_scale, sample_weight)
        return SOLVERS[solver_key(solver, context.device, t)](
            self._kernel(), X, y, sample_weight, ridge, t, context
        )

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
        context = self._context(0, predict=True, dask_input=True)
        return nystrom_predict(
            X.astype(np.float64).rechunk({1: -1}),
            self.X_fit_,
            self.dual_coef_,
            self._kernel().block_function(context.device, context),
        )

    def _kernel_dot(self, X, coef=None):
        """``K(X, X_fit_) @ coef`` (:func:`kernel_dot`)."""
        return kernel_dot(self, X, self.dual_coef_ if coef is None else coef)

    # -- dense linear algebra at predict time ------------------------------
    def _device_converter(self, n_entries):
        """``(asarray, device)`` for the dense linear algebra of one call.

        ``asarray`` moves NumPy arrays to where the work runs (CuPy on the
        GPU, chosen as for :meth:`_kernel_dot`) and ``device`` is the value to
        pass to the kernel functions. The code using it is array-API generic
        (tests run it on ``array_api_strict`` by replacing this method).
        """
        cupy = self._context(n_entries, predict=True).cupy
        return (np.asarray, "cpu") if cupy is None else (cupy.asarray, "gpu")

    def _kernel_blocks(self, A, B, kernels, device):
        """``{name: K_name(A, B)}`` (:func:`kernel_blocks`)."""
        return kernel_blocks(self, A, B, kernels, device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def kernel_dot(model, X, coef):
    """``K(X, model.X_fit_) @ coef``, streamed over row blocks of ``X``.

    The prediction kernel product of a fitted :class:`_BaseNTK` ``model``.
    ``X`` is validated (dense or sparse). Sparse rows are densified one
    block at a time. ``coef`` is NumPy, ``(n_train,)`` or ``(n_train, k)``.
    With ``memory`` on the CPU, the whole ``K(X, X_fit_)`` is taken from (or
    put in) the cache.
    """
    if sp.issparse(X):
        rows = max(1, SPARSE_DENSIFY_MAX_ENTRIES // max(X.shape[1], 1))
        X = X.tocsr()
        parts = [
            kernel_dot(model, X[i : i + rows].toarray(), coef)
            for i in range(0, X.shape[0], rows)
        ]
        if parts:
            return np.concatenate(parts, axis=0)
        return np.zeros((0,) + coef.shape[1:])
    context = model._context(X.shape[0] * model.X_fit_.shape[0], predict=True)
    spec, kernel = model._spec(), model.kernel
    cupy = context.cupy
    if cupy is not None:
        out = spec_matvec(
            cupy.asarray(X),
            cupy.asarray(model.X_fit_),
            cupy.asarray(coef),
            spec,
            kernel,
            working_memory=model.working_memory,
            device="gpu",
        )
        out = cupy.asnumpy(out)
    elif model.memory is not None:
        K = cached_kernel(
            model.memory,
            X,
            model.X_fit_,
            kernel=kernel,
            spec=spec,
            working_memory=model.working_memory,
            n_jobs=model.n_jobs,
            device="cpu",
        )
        out = blas_matmul(K, np.asarray(coef, dtype=np.float64))
    else:
        out = spec_matvec(
            X,
            model.X_fit_,
            coef,
            spec,
            kernel,
            working_memory=model.working_memory,
            n_jobs=model.n_jobs,
            device="cpu",
            verbose=model.verbose,
        )
    return check_finite_prediction(out)


def kernel_blocks(model, A, B, kernels, device):
    """``{name: K_name(A, B)}`` for ``name`` in ``kernels`` (``B=None``: A, A).

    Both kernels come from one pass of the recursion, or, with
    ``memory`` and NumPy arrays, each from the cache.
    """
    common = dict(
        working_memory=model.working_memory, n_jobs=model.n_jobs, device=device
    )
    numpy_in = is_numpy_namespace(get_namespace(A, B))
    if len(kernels) == 1 or (model.memory is not None and numpy_in):
        return {
            name: cached_kernel(
                model.memory if numpy_in else None,
                A,
                B,
                kernel=name,
                spec=model._spec(name),
                **common,
            )
            for name in kernels
        }
    return spec_kernels(A, B, model._spec("ntk"), ("nngp", "ntk"), **common)
