"""Warnings and errors raised by sknetk.

Examples
--------
Stop on a singular kernel instead of accepting its minimum-norm
least-squares solution:

>>> import warnings
>>> import numpy as np
>>> from sknetk import NTKRegressor
>>> from sknetk.exceptions import IllConditionedKernelWarning
>>> X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # a repeated row
>>> with warnings.catch_warnings():
...     warnings.simplefilter("error", IllConditionedKernelWarning)
...     try:
...         NTKRegressor(alpha=0.0).fit(X, [0.0, 1.0, 2.0])
...     except IllConditionedKernelWarning as exc:
...         print(type(exc).__name__)
IllConditionedKernelWarning
"""

from ._device import GPUUnavailableError

__all__ = ["IllConditionedKernelWarning", "GridEdgeWarning", "GPUUnavailableError"]


class IllConditionedKernelWarning(UserWarning):
    """The regularised kernel matrix is singular or numerically ill-conditioned.

    Raised by :func:`sknetk._solver.solve_kernel_ridge` (and so by the
    estimators' ``fit``) when the Cholesky factorisation of
    ``K + alpha * I`` fails or is numerically singular. The solve then falls
    back to an eigendecomposition that treats eigenvalues below a relative
    tolerance as zero, which gives the minimum-norm least-squares solution.
    Increasing ``alpha`` (or using ``alpha_scale="mean_diag"``) usually
    removes the warning.
    """


class GridEdgeWarning(UserWarning):
    """The chosen ``alpha`` is the smallest or the largest of ``alphas``.

    Issued by :class:`~sknetk.NTKRegressorCV` and
    :class:`~sknetk.NTKClassifierCV` when the selected ridge sits at an end of
    the searched grid: the optimum may lie outside it, so extend ``alphas``
    past that end.

    Examples
    --------
    >>> from sknetk.exceptions import GridEdgeWarning
    >>> issubclass(GridEdgeWarning, UserWarning)
    True
    """
