"""Fourier feature mappings of the input (Tancik et al. 2020)."""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["FourierFeatures"]

KINDS = ("gaussian", "positional", "basic")


class FourierFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Map inputs to Fourier features ``[cos(2 pi X B^T), sin(2 pi X B^T)]``.

    A network (or its NTK) fed with raw low-dimensional coordinates learns
    high frequencies very slowly: the NTK's eigenvalues fall off fast with
    frequency ("spectral bias"). Passing the coordinates ``x`` through
    ``gamma(x) = [cos(2 pi B x), sin(2 pi B x)]`` first makes the composed
    kernel stationary with a tunable bandwidth, so that higher frequencies are
    learnt [1]_. Place it before :class:`~sknetk.NTKRegressor` in a pipeline
    and tune ``scale`` like an RBF kernel's bandwidth.

    Read more in the :ref:`User Guide <fourier_features>`.

    Parameters
    ----------
    n_components : int, default=256
        ``"gaussian"``: number of random frequency vectors (rows of ``B``).
        ``"positional"``: number of frequencies per input feature.
        Ignored for ``"basic"``.

    kind : {"gaussian", "positional", "basic"}, default="gaussian"
        How the frequency matrix ``B`` is built, for ``d`` input features:

        - ``"gaussian"``: ``B`` has ``n_components`` rows with entries drawn
          from ``N(0, scale**2)``.
        - ``"positional"``: axis-aligned, log-linearly spaced frequencies:
          for each input feature ``a`` and ``j = 0, ..., m - 1`` with
          ``m = n_components``, row ``a * m + j`` of ``B`` is
          ``scale ** (j / m)`` times the unit vector ``e_a``
          (``B`` has ``m * d`` rows).
        - ``"basic"``: ``B`` is the identity (``d`` rows):
          ``[cos(2 pi x), sin(2 pi x)]``.

    scale : float, default=10.0
        Frequency scale (> 0): the standard deviation of the Gaussian
        frequencies, or the largest positional frequency's base ``sigma``.
        Frequencies are in cycles per unit of the input, and the default
        follows [1]_ for coordinates in ``[0, 1]`` (use ``MinMaxScaler``).
        Larger values fit finer detail and overfit sooner. Ignored for
        ``"basic"``.

    random_state : int, RandomState instance or None, default=None
        Draws the Gaussian frequencies (``kind="gaussian"`` only). Pass an
        int for reproducible output across multiple function calls.
        See :term:`Glossary <random_state>`.

    Attributes
    ----------
    B_ : ndarray of shape (n_frequencies, `n_features_in_`)
        The frequency matrix, in the dtype of the data seen in :term:`fit`
        (float32 or float64). ``n_frequencies`` is ``n_components`` for
        ``"gaussian"``, ``n_components * n_features_in_`` for
        ``"positional"`` and ``n_features_in_`` for ``"basic"``.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.kernel_approximation.RBFSampler : Random Fourier features with a
        random phase, approximating an RBF kernel.

    Notes
    -----
    The output has ``2 * n_frequencies`` columns: the cosines of all
    frequencies, then their sines. Its dtype is that of the input (float32
    stays float32). With ``kind="gaussian"``, the inner product of two
    feature vectors divided by ``n_components`` approximates the Gaussian
    kernel ``exp(-2 pi^2 scale^2 ||x - x'||^2)``.

    References
    ----------
    .. [1] M. Tancik, P. P. Srinivasan, B. Mildenhall, S. Fridovich-Keil, N.
       Raghavan, U. Singhal, R. Ramamoorthi, J. T. Barron and R. Ng,
       "Fourier Features Let Networks Learn High Frequency Functions in Low
       Dimensional Domains", NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sknetk import FourierFeatures
    >>> X = np.linspace(0, 1, 5).reshape(-1, 1)
    >>> FourierFeatures(kind="basic").fit_transform(X).round(3)
    array([[ 1.,  0.],
           [ 0.,  1.],
           [-1.,  0.],
           [-0.,  -1.],
           [ 1., -0.]])
    >>> ff = FourierFeatures(n_components=8, scale=3.0, random_state=0).fit(X)
    >>> ff.transform(X).shape
    (5, 16)

    In a pipeline, to fit a function with fine detail:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> from sknetk import NTKRegressor
    >>> x = np.linspace(0, 1, 64).reshape(-1, 1)
    >>> y = np.sin(12 * np.pi * x).ravel()
    >>> model = make_pipeline(
    ...     MinMaxScaler(),
    ...     FourierFeatures(n_components=64, scale=5.0, random_state=0),
    ...     NTKRegressor(alpha=1e-3, alpha_scale="mean_diag"),
    ... )
    >>> model.fit(x[::2], y[::2]).score(x[1::2], y[1::2]) > 0.9
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "kind": [StrOptions(set(KINDS))],
        "scale": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, n_components=256, *, kind="gaussian", scale=10.0, random_state=None
    ):
        self.n_components = n_components
        self.kind = kind
        self.scale = scale
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the frequency matrix ``B_`` for the features of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; only its number of features and dtype are used.

        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        X = validate_data(
            self, X, accept_sparse=("csr", "csc"), dtype=[np.float64, np.float32]
        )
        n_features = X.shape[1]
        if self.kind == "gaussian":
            rng = check_random_state(self.random_state)
            B = rng.normal(scale=self.scale, size=(self.n_components, n_features))
        elif self.kind == "positional":
            m = self.n_components
            freqs = float(self.scale) ** (np.arange(m) / m)
            B = np.zeros((n_features * m, n_features))
            for axis in range(n_features):
                B[axis * m : (axis + 1) * m, axis] = freqs
        else:
            B = np.eye(n_features)
        self.B_ = B.astype(X.dtype, copy=False)
        self._n_features_out = 2 * B.shape[0]
        return self

    def transform(self, X):
        """Compute ``[cos(2 pi X B_^T), sin(2 pi X B_^T)]``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to transform.

        Returns
        -------
        X_new : ndarray of shape (n_samples, 2 * n_frequencies)
            Cosines then sines, in the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc"),
            dtype=[np.float64, np.float32],
            reset=False,
        )
        B = self.B_.astype(X.dtype, copy=False)
        phase = safe_sparse_dot(X, B.T, dense_output=True)
        phase *= X.dtype.type(2 * math.pi)
        m = B.shape[0]
        out = np.empty((X.shape[0], 2 * m), dtype=X.dtype)
        np.cos(phase, out=out[:, :m])
        np.sin(phase, out=out[:, m:])
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
