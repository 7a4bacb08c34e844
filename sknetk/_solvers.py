"""The solvers of the NTK estimators: one contract, one registry, one dispatcher.

Modelled on scikit-learn's ``linear_model/_ridge.py``: every way of fitting
kernel ridge regression (or its finite-time gradient flow) with a network
kernel is a function of the same shape,

``solver(kernel, X, y, sample_weight, ridge, t, context) -> FitResult``,

registered in :data:`SOLVERS`, and :func:`choose_solver` /
:func:`solver_key` are the one place that reads the user's ``solver``.

- ``kernel`` (:class:`Kernel`): which kernel and its network parameters,
  with the functions computing its matrix and its diagonal.
- ``X`` (validated rows), ``y`` (float64 targets), ``sample_weight``
  (validated weights or ``None``).
- ``ridge`` (:class:`Ridge`): the user's ``alpha`` and ``alpha_scale``; a
  solver calls ``ridge.value(diag)`` with the (unweighted) diagonal of the
  training kernel when ``ridge.needs_diag``, and this is the one place where
  :func:`~sknetk._solver.effective_alpha` runs.
- ``t``: the finite training time, or ``None`` when trained to convergence.
- ``context`` (:class:`ExecutionContext`): where and how the work runs
  (device and CuPy module, ``working_memory``, ``n_jobs``, ``verbose``,
  ``memory``, ``random_state`` and the Nystrom solver's settings).

Adding a solver is one function here plus one :class:`Solver` entry in
:data:`SOLVERS` (its name, device and whether it runs a finite-time flow
select it in :func:`solver_key`; whether it keeps the training rows tells the
estimators to copy them, :func:`keeps_training_rows`).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._array_api import get_namespace, is_dask, to_numpy
from ._cache import cached_kernel
from ._calibration import loo_from_factor
from ._gpu_solve import solve_ridge_gpu
from ._linalg import check_finite_kernel
from ._nystrom import kernel_block_function, nystrom_fit
from ._solver import cholesky_solve, effective_alpha, solve_kernel_ridge
from .dynamics import gradient_flow_dual_coef
from .kernels import budget_bytes


@dataclass(frozen=True)
class Kernel:
    """A network kernel: its name, parameters and the functions computing it.

    ``function(X, **params, working_memory=..., device=..., [n_jobs, verbose])``
    is :func:`~sknetk.kernels.ntk_kernel` or
    :func:`~sknetk.kernels.nngp_kernel`; ``diag_function(X, **params)`` the
    matching diagonal.
    """

    name: str
    params: dict
    function: Callable
    diag_function: Callable

    def matrix(self, X, context, **kwargs):
        """``K(X, X)`` computed where ``context`` says (CuPy ``X`` on the GPU)."""
        if context.device == "gpu":
            return self.function(
                X,
                **self.params,
                working_memory=context.working_memory,
                device="gpu",
                **kwargs,
            )
        return self.function(
            X,
            **self.params,
            working_memory=context.working_memory,
            n_jobs=context.n_jobs,
            device="cpu",
            verbose=context.verbose,
            **kwargs,
        )

    def block_function(self, device, context):
        """Picklable ``kernel_fn(A, B=None)`` for :mod:`sknetk._nystrom`."""
        return kernel_block_function(
            self.name,
            working_memory=context.working_memory,
            n_jobs=context.n_jobs,
            device=device,
            **self.params,
        )


@dataclass(frozen=True)
class Ridge:
    """The user's ridge: ``alpha`` and ``alpha_scale``, with the fit's weights."""

    alpha: float
    scale: str
    sample_weight: Any = None

    @property
    def needs_diag(self):
        """True when :meth:`value` needs the training kernel's diagonal."""
        return self.scale == "mean_diag"

    def value(self, diag=None):
        """The effective ridge ``alpha_`` (``diag``: unweighted ``K(x_i, x_i)``)."""
        return effective_alpha(self.alpha, self.scale, diag, self.sample_weight)


@dataclass(frozen=True)
class ExecutionContext:
    """Where and how one fit or prediction runs, resolved once.

    ``device`` is ``"cpu"`` or ``"gpu"`` (for dask input: the value the
    workers choose their device from); ``cupy`` is the CuPy module when
    ``device == "gpu"`` and the work runs in this process. ``loo=True``
    asks the exact CPU solver for the leave-one-out predictions of its fit
    as well (:attr:`FitResult.loo`), from the factor it has just made.
    """

    device: str = "cpu"
    cupy: Any = None
    working_memory: Any = None
    n_jobs: Any = -1
    verbose: int = 0
    memory: Any = None
    random_state: Any = None
    n_centers: int = 5000
    max_iter: int = 100
    tol: float = 1e-6
    loo: bool = False


@dataclass
class FitResult:
    """What every solver returns (the estimators' fitted attributes).

    ``loo``: the exact leave-one-out predictions of the training rows, shape
    ``(n, n_targets)`` (:func:`~sknetk._calibration.loo_decision_values`),
    when the context asked for them (``ExecutionContext.loo``) and the solver
    could get them from its own factorisation; None otherwise (the caller then
    computes them itself).
    """

    X_fit: Any
    dual_coef: Any
    alpha: float
    solver: str
    n_iter: int = 1
    loo: Any = None


def time_scale(sample_weight):
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


# -- the exact solvers on the CPU ---------------------------------------------
def train_kernel(kernel, X, context):
    """Training kernel ``K(X, X)`` on the CPU: float64, private and writable.

    With ``context.memory`` it comes from the cache; a cached kernel is
    read-only (a memory map on a hit), so it is copied and the cache file is
    never written.
    """
    if context.memory is None:
        return kernel.matrix(X, context)
    K = cached_kernel(
        context.memory,
        X,
        kernel=kernel.name,
        **kernel.params,
        working_memory=context.working_memory,
        n_jobs=context.n_jobs,
        device="cpu",
    )
    return np.require(np.asarray(K), dtype=np.float64, requirements=["W"])


def _diag(K, ridge):
    """Copy of ``K``'s diagonal if the ridge needs it (before ``K`` is overwritten)."""
    return K.diagonal().copy() if ridge.needs_diag else None


def solve_cholesky(kernel, X, y, sample_weight, ridge, t, context):
    """Exact kernel ridge on the CPU: the Cholesky solve of ``K + alpha_ I``.

    With ``context.loo``, the leave-one-out predictions come from the same
    factor (:func:`~sknetk._calibration.loo_from_factor`: one triangular
    inverse in place), so the training kernel is computed and factorised
    once for both.
    """
    K = train_kernel(kernel, X, context)
    alpha = ridge.value(_diag(K, ridge))
    if not context.loo:
        dual = solve_kernel_ridge(K, y, alpha, sample_weight, overwrite_K=True)
        return FitResult(X, dual, alpha, "cholesky")
    # The rows of zero weight, whose LOO value is the full model's
    # prediction, before K is overwritten by the factor.
    zero_rows = None if sample_weight is None else K[sample_weight == 0]
    out = cholesky_solve(K, y, alpha, sample_weight, overwrite_K=True)
    del K
    loo = None
    if out.factor is not None:
        loo = loo_from_factor(
            out.factor,
            y.reshape(y.shape[0], -1),
            alpha,
            sample_weight,
            out.scaled,
            kernel_rows=lambda zero: zero_rows,
        )
    return FitResult(X, out.dual, alpha, "cholesky", loo=loo)


def _flow_fit(K, X, y, sample_weight, ridge, t, asarray=np.asarray):
    """The flow's :class:`FitResult` from the training kernel ``K`` (any
    namespace; ``asarray`` moves NumPy arrays there). NumPy results."""
    alpha = ridge.value(to_numpy(K.diagonal()) if ridge.needs_diag else None)
    check_finite_kernel(get_namespace(K), K)
    dual = gradient_flow_dual_coef(
        K,
        asarray(y),
        t=t,
        ridge=alpha,
        learning_rate=time_scale(sample_weight),
        sample_weight=None if sample_weight is None else asarray(sample_weight),
    )
    return FitResult(X, to_numpy(dual), alpha, "cholesky")


def solve_flow(kernel, X, y, sample_weight, ridge, t, context):
    """Exact gradient flow for time ``t`` on the CPU: one eigendecomposition."""
    K = train_kernel(kernel, X, context)
    return _flow_fit(K, X, y, sample_weight, ridge, t)


# -- the exact solvers on the GPU ---------------------------------------------
def solve_cholesky_gpu(kernel, X, y, sample_weight, ridge, t, context):
    """Exact kernel ridge on the GPU; NumPy dual coefficients.

    The kernel is built on the device and factorised in place by cuSOLVER
    (one ``n x n`` matrix of device memory), weighted as on the CPU
    (:func:`~sknetk._gpu_solve.solve_ridge_gpu`); on failure the solve warns
    and falls back to an eigendecomposition of a fresh kernel. CuPy's pool
    blocks are released after the fit.
    """
    cupy = context.cupy
    Xg = cupy.asarray(X)
    first = [kernel.matrix(Xg, context)]
    alpha = ridge.value(cupy.asnumpy(first[0].diagonal()) if ridge.needs_diag else None)

    def kernel_once():
        return first.pop() if first else kernel.matrix(Xg, context)

    w = None if sample_weight is None else cupy.asarray(sample_weight)
    try:
        dual = solve_ridge_gpu(kernel_once, cupy.asarray(y), alpha, w)
        return FitResult(X, cupy.asnumpy(dual), alpha, "cholesky")
    finally:
        first.clear()
        cupy.get_default_memory_pool().free_all_blocks()


def solve_flow_gpu(kernel, X, y, sample_weight, ridge, t, context):
    """Exact gradient flow for time ``t`` on the GPU (cuSOLVER ``syevd``).

    The same array-API code as on the CPU, with about four ``n x n``
    matrices of device memory (the kernel, its symmetrised copy, the
    eigenvectors and the solver's workspace).
    """
    cupy = context.cupy
    K = kernel.matrix(cupy.asarray(X), context)
    try:
        return _flow_fit(K, X, y, sample_weight, ridge, t, cupy.asarray)
    finally:
        del K
        cupy.get_default_memory_pool().free_all_blocks()


# -- Nystrom + preconditioned conjugate gradient ------------------------------
def train_diag(kernel, X, context):
    """``K(x, x)`` of the training rows in O(n), by row blocks (memmap, dask)."""
    if is_dask(X):
        return np.asarray(
            X.map_blocks(
                kernel.diag_function, drop_axis=1, dtype=np.float64, **kernel.params
            ).compute()
        )
    rows = max(1, int(budget_bytes(context.working_memory) // (16 * X.shape[1])))
    parts = [
        to_numpy(kernel.diag_function(np.asarray(X[i : i + rows]), **kernel.params))
        for i in range(0, X.shape[0], rows)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def solve_nystrom(kernel, X, y, sample_weight, ridge, t, context):
    """Nystrom + FALKON-preconditioned CG (:mod:`sknetk._nystrom`); NumPy results.

    Only the centres are kept (``X_fit``), so prediction is the same
    ``K(X, X_fit) @ dual_coef`` as for the exact solvers. On the GPU, ``X``
    is copied to the device and every block, factor and CG vector stays
    there; dask input runs its row blocks on the current cluster, each worker
    choosing its device from ``context.device``. The ridge is ``alpha_``,
    floored by the solver for degenerate centres.
    """
    alpha = ridge.value(train_diag(kernel, X, context) if ridge.needs_diag else None)
    cupy = context.cupy if not is_dask(X) else None
    device = context.device
    if cupy is not None:
        # On the device, the kernel of CuPy input runs there ("auto").
        X, device = cupy.asarray(X), "auto"
    try:
        centers, coef, n_iter, info = nystrom_fit(
            X,
            y,
            kernel_fn=kernel.block_function(device, context),
            n_centers=context.n_centers,
            alpha=alpha,
            max_iter=context.max_iter,
            tol=context.tol,
            random_state=context.random_state,
            working_memory=context.working_memory,
            sample_weight=sample_weight,
            verbose=context.verbose,
        )
        return FitResult(
            np.asarray(to_numpy(centers), dtype=np.float64),
            to_numpy(coef),
            float(info["alpha"]),
            "nystrom",
            n_iter,
        )
    finally:
        if cupy is not None:
            cupy.get_default_memory_pool().free_all_blocks()


@dataclass(frozen=True)
class Solver:
    """One entry of :data:`SOLVERS`: a solver function and where it applies.

    Calling the entry calls ``fit``. :func:`solver_key` picks the entry
    whose ``name``, ``device`` and ``finite_t`` match a fit, and
    :func:`keeps_training_rows` reads ``keeps_X``, so these fields are the
    only place that says what each solver is for.

    Attributes
    ----------
    fit : callable
        ``fit(kernel, X, y, sample_weight, ridge, t, context) -> FitResult``.
    name : {"cholesky", "nystrom"}
        What :func:`choose_solver` returns for it and what the estimators
        report as ``solver_`` (the finite-time flow is an exact solver).
    device : {"cpu", "gpu"} or None
        Where it runs; None: wherever ``context.device`` says.
    finite_t : bool
        True for the gradient flow stopped at a finite time ``t``, False for
        the converged fit (``t=None`` or ``inf``).
    keeps_X : bool
        True when :attr:`FitResult.X_fit` is the ``X`` it was given (the
        exact solvers predict with every training row), False when it is a
        new array (the Nystrom centres, drawn from ``X`` read by blocks).
    """

    fit: Callable
    name: str
    device: Any
    finite_t: bool
    keeps_X: bool

    def __call__(self, kernel, X, y, sample_weight, ridge, t, context):
        return self.fit(kernel, X, y, sample_weight, ridge, t, context)


#: Every solver, by key. Adding one: a function of the contract above and
#: one entry here; :func:`solver_key` and :func:`keeps_training_rows` read the
#: entries, and ``tests/test_solver_registry.py`` checks every entry.
SOLVERS = {
    "cholesky": Solver(solve_cholesky, "cholesky", "cpu", False, True),
    "flow": Solver(solve_flow, "cholesky", "cpu", True, True),
    "cholesky_gpu": Solver(solve_cholesky_gpu, "cholesky", "gpu", False, True),
    "flow_gpu": Solver(solve_flow_gpu, "cholesky", "gpu", True, True),
    "nystrom": Solver(solve_nystrom, "nystrom", None, False, False),
}


# -- the dispatcher -----------------------------------------------------------
def flow_time(t):
    """The finite training time ``t`` as a float, or ``None`` when converged."""
    if t is None or math.isinf(t):
        return None
    return float(t)


def choose_solver(
    solver,
    n_samples,
    *,
    dask_input=False,
    t=None,
    memory=None,
    device_of=None,
    working_memory=None,
    verbose=0,
    name="",
):
    """``"cholesky"`` or ``"nystrom"`` for one fit: the one reader of ``solver``.

    Called before the input validation, which copies ``X`` for the exact
    solver only (the Nystrom solver reads ``X`` block by block, so a memmap
    is never loaded whole).

    Parameters
    ----------
    solver : {"auto", "cholesky", "nystrom"}
        The estimator's ``solver``.
    n_samples : int
        Training rows.
    dask_input : bool, default=False
        True for a dask ``X`` (only the Nystrom solver takes it).
    t : float or None, default=None
        The finite training time (see :func:`flow_time`).
    memory : object, default=None
        The estimator's kernel cache.
    device_of : callable, default=None
        ``device_of(n_entries) -> "cpu" | "gpu"``, where a kernel of that
        many entries is computed (``None``: the CPU).
    working_memory : float, default=None
        The memory budget in MiB of the CPU fit.
    verbose : int, default=0
        With ``solver="auto"``, print the choice and why.
    name : str, default=""
        The estimator's name, for the printed line.

    Raises ``ValueError`` for the combinations that cannot work: dask input
    with ``"cholesky"``, and a finite ``t`` or ``memory`` (which need the
    exact kernel) with ``"nystrom"`` or dask input.
    """
    exact_only = " and ".join(
        what
        for what, value in (("a finite t", flow_time(t)), ("memory", memory))
        if value is not None
    )
    if solver == "cholesky":
        if dask_input:
            raise ValueError(
                'solver="cholesky" needs the n x n kernel in one process; '
                'fit dask arrays with solver="nystrom" or "auto".'
            )
        return "cholesky"
    if solver == "nystrom" or dask_input:
        if exact_only:
            raise ValueError(
                f"The Nystrom solver cannot fit with {exact_only}, which "
                'needs the exact training kernel: use solver="cholesky" '
                '(or "auto") on NumPy input, or set t=None and memory=None.'
            )
        return "nystrom"
    need = 8 * n_samples**2
    if device_of is not None and device_of(n_samples**2) == "gpu":
        # On the GPU the exact fit factorises in place: one n x n matrix
        # of device memory, judged against what the device has free.
        from ._cuda import free_device_memory

        budget, where = 0.9 * free_device_memory(), "free GPU memory"
    else:
        budget, where = budget_bytes(working_memory), "working_memory"
    if exact_only:
        chosen, why = "cholesky", f"{exact_only} needs the exact kernel"
    elif need <= budget:
        chosen, why = "cholesky", "it fits"
    else:
        chosen, why = "nystrom", "it does not fit"
    if verbose:
        print(
            f"[{name}] solver='auto': the {n_samples} x {n_samples} kernel "
            f"needs {need / 2**20:.1f} MiB and {where} is "
            f"{budget / 2**20:.1f} MiB; {why}: using {chosen!r}."
        )
    return chosen


def kernel_entries(solver, n_samples, n_centers):
    """Entries of the largest kernel matrix ``solver`` computes (for ``device``)."""
    if solver == "nystrom":
        return n_samples * min(n_centers, n_samples)
    return n_samples**2


def solver_key(solver, device, t):
    """The :data:`SOLVERS` key fitting with ``solver`` (what
    :func:`choose_solver` returned) on ``device`` for time ``t``."""
    finite_t = flow_time(t) is not None
    for key, entry in SOLVERS.items():
        if (
            entry.name == solver
            and entry.device in (None, device)
            and entry.finite_t == finite_t
        ):
            return key
    raise ValueError(
        f"No registered solver fits solver={solver!r} on device={device!r} "
        f"with t={t!r}."
    )


def keeps_training_rows(solver):
    """True when a fit by ``solver`` keeps the training rows it was given.

    ``solver`` is what :func:`choose_solver` returned. The exact solvers
    return the validated ``X`` itself as :attr:`FitResult.X_fit`, so the
    estimator must own a copy (validate with ``copy=True``) for its
    ``X_fit_`` never to share memory with the caller's array; the Nystrom
    solver returns new centres and reads ``X`` block by block, so a memory
    map is never loaded whole (validate without a copy).
    """
    return any(entry.keeps_X for entry in SOLVERS.values() if entry.name == solver)
