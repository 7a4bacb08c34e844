"""The one source of the public parameters: their constraints and their documentation.

Every parameter that the kernel functions and the estimators share (the
network, where and how the work runs, the solver, the convolutional
architecture, the model-selection grid) has one :class:`Param` entry in
:data:`PARAMS`: its scikit-learn constraint list (the
``_parameter_constraints`` style of :mod:`sklearn.utils._param_validation`)
and its numpydoc text. The estimators build ``_parameter_constraints`` with
:func:`constraints`; the public functions are validated by
:func:`validated` (scikit-learn's ``validate_params`` fed from the same
lists); every docstring takes its parameter section from :func:`param_docs`
(or the decorators :func:`fill_doc` and :func:`validated`).

Where a parameter means something else in another context (a list searched
by the CV estimators, the convolutional network's ``depth``, the diagonal
functions' ``device``), its entry has a named *variant* instead of a second
copy. The contexts are

``"function"``
    the fully connected kernel functions (:mod:`sknetk.kernels`);
``"diag"``
    their diagonals (``ntk_diag``, ``nngp_diag``; falls back to
    ``"function"``);
``"conv"``, ``"conv_diag"``
    the convolutional kernel functions (:mod:`sknetk.conv`; fall back to
    ``"function"``);
``"estimator"``
    :class:`~sknetk.NTKRegressor` and :class:`~sknetk.NTKClassifier`;
``"cv"``
    the model-selection estimators (fall back to ``"estimator"``);
``"conv_estimator"``
    the image estimators (fall back to ``"estimator"``);
``"empirical"``
    the after-kernel estimators of :mod:`sknetk.empirical` (fall back to
    ``"estimator"``).

A variant may be asked for by name as well: ``"activation:cv"``.

This module sits in the foundations layer (see ``docs/contributing.rst``):
the option tuples the constraints need (:data:`KERNELS`,
:data:`PARAMETERIZATIONS`, :data:`ALPHA_SCALES`, :data:`PADDINGS`,
:data:`READOUTS`, :data:`SOLVER_OPTIONS`) are defined here, below the
modules that use them.
"""

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn.metrics import get_scorer_names
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_params,
)

from ._activations import ACTIVATIONS
from ._device import DEVICES

__all__ = [
    "ACTIVATION_NAMES",
    "ALPHA_SCALES",
    "CONTEXTS",
    "KERNELS",
    "PADDINGS",
    "PARAMETERIZATIONS",
    "PARAMS",
    "Param",
    "READOUTS",
    "SOLVER_OPTIONS",
    "constraints",
    "default",
    "estimator_dataclass",
    "fill_doc",
    "param_docs",
    "param_fields",
    "validated",
]

#: Names of the activations (``sknetk.kernels.ACTIVATION_NAMES``).
ACTIVATION_NAMES = tuple(sorted(ACTIVATIONS))
#: Values of ``kernel``.
KERNELS = ("ntk", "nngp")
#: Values of ``parameterization`` (neural-tangents' Dense layers).
PARAMETERIZATIONS = ("ntk", "standard")
#: Values of ``alpha_scale``.
ALPHA_SCALES = ("absolute", "mean_diag")
#: Values of ``padding`` (the functions also take them in lower case).
PADDINGS = ("SAME", "CIRCULAR", "VALID")
#: Values of ``readout``.
READOUTS = ("flatten", "gap")
#: Values of the estimators' ``solver``.
SOLVER_OPTIONS = ("auto", "cholesky", "nystrom")

#: Context -> the context it falls back to when an entry has no variant for it
#: (``None``: the entry's default).
CONTEXTS = {
    "function": None,
    "diag": "function",
    "conv": "function",
    "conv_diag": "conv",
    "estimator": None,
    "cv": "estimator",
    "conv_estimator": "estimator",
    "empirical": "estimator",
}


class _FloatDtype(Options):
    """``"float64"`` or ``"float32"``: a string, a NumPy dtype or type, or an
    array-API namespace's dtype object (``xp.float64``)."""

    def __init__(self):
        super().__init__(object, {"float64", "float32"})

    def is_satisfied_by(self, val):
        if isinstance(val, str):
            return val in self.options
        try:
            name = np.dtype(val).name
        except TypeError:
            name = str(val).rsplit(".", 1)[-1]  # array_api_strict.float64
        return name in self.options

    def __str__(self):
        return "'float64' or 'float32' (a string or a dtype)"


@dataclass(frozen=True)
class Param:
    """One public parameter: numpydoc type, description and constraints.

    Parameters
    ----------
    name : str
        The parameter's name.
    type : str
        The numpydoc type line after ``name :``, ending with its default
        (``", default=<Python literal>"``): the default is read from there
        (:func:`default`), so the documented value is the one used.
    doc : str
        The description (unindented; wrapped for an indent of 8).
    constraints : list or str
        The scikit-learn constraint list (or ``"no_validation"``).
    variants : dict
        Context name -> dict with any of ``type``, ``doc`` and
        ``constraints`` replacing the default in that context.

    Examples
    --------
    >>> from sknetk._params import PARAMS
    >>> PARAMS["depth"].resolve("conv")["doc"]
    'Number of ``Conv -> activation`` blocks.'
    """

    name: str
    type: str
    doc: str
    constraints: object
    variants: dict = field(default_factory=dict)

    def resolve(self, context=None):
        """``{"type", "doc", "constraints"}`` of this parameter in ``context``."""
        chain = []
        while context is not None:
            if context not in CONTEXTS and context not in self.variants:
                raise ValueError(
                    f"Unknown context {context!r} for parameter {self.name!r}; "
                    f"one of {sorted(CONTEXTS)} or {sorted(self.variants)}."
                )
            chain.append(context)
            context = CONTEXTS.get(context)
        out = {"type": self.type, "doc": self.doc, "constraints": self.constraints}
        for key in out:
            for name in chain:
                if key in self.variants.get(name, {}):
                    out[key] = self.variants[name][key]
                    break
        return out


def _text(s):
    return textwrap.dedent(s).strip("\n")


PARAMS = {}


def _add(name, type, doc, constraints, **variants):
    for variant in variants.values():
        if "doc" in variant:
            variant["doc"] = _text(variant["doc"])
    PARAMS[name] = Param(name, type, _text(doc), constraints, variants)


_INTERVAL_DEPTH = [Interval(Integral, 1, None, closed="left")]

# -- the inputs of the kernel functions ------------------------------------------
_add(
    "X",
    "array-like of shape (n_samples_X, n_features)",
    "Input rows.",
    "no_validation",  # checked by the functions (any array namespace)
    diag=dict(type="array-like of shape (n_samples, n_features)"),
    conv=dict(
        type="array-like of shape (n_samples_X, H, W, C) or (n_samples_X, H*W*C)",
        doc="Images, or flattened images (see ``image_shape``).",
    ),
    conv_diag=dict(
        type="array-like of shape (n_samples, H, W, C) or (n_samples, H*W*C)"
    ),
)
_add(
    "Y",
    "array-like of shape (n_samples_Y, n_features), default=None",
    """
    Second set of rows; ``None`` computes ``K(X, X)`` (exactly symmetric on
    the CPU, where only one triangle of tiles is computed).
    """,
    "no_validation",
    conv=dict(
        type="array-like of the same image shape, default=None",
        doc="""
        Second set of images; ``None`` computes ``K(X, X)`` (exactly
        symmetric; only one triangle of image pairs is computed).
        """,
    ),
)

# -- the network ---------------------------------------------------------------
_add(
    "kernel",
    '{"ntk", "nngp"}, default="ntk"',
    """
    Which kernel: ``"ntk"``, the Neural Tangent Kernel (every layer
    trained), or ``"nngp"``, the NNGP kernel (the readout alone trained).
    """,
    [StrOptions(set(KERNELS))],
    estimator=dict(
        doc="""
        ``"ntk"``: the Neural Tangent Kernel, i.e. every layer is trained;
        the model is the mean prediction of the infinitely wide network
        trained to convergence by gradient descent on squared loss.
        ``"nngp"``: the NNGP kernel, i.e. only the readout layer is trained
        (equivalently, the posterior mean of the network's Gaussian
        process).
        """
    ),
    cv=dict(
        doc="""
        Train every layer (``"ntk"``) or the readout only (``"nngp"``).
        """
    ),
    conv_estimator=dict(
        doc="""
        ``"ntk"``: the convolutional Neural Tangent Kernel (every layer
        trained); ``"nngp"``: the CNN-GP kernel (the readout alone trained,
        the posterior mean of the network's Gaussian process).
        """
    ),
)
_add(
    "depth",
    "int, default=3",
    """
    Number of hidden ``Dense -> activation`` blocks; a linear readout
    layer follows them.
    """,
    _INTERVAL_DEPTH,
    conv=dict(doc="Number of ``Conv -> activation`` blocks."),
    conv_estimator=dict(doc="Number of ``Conv -> activation`` blocks."),
)
_add(
    "activation",
    'str, default="relu"',
    """
    Activation of the hidden layers, one of
    ``sknetk.kernels.ACTIVATION_NAMES``: {activations}.
    """,
    [StrOptions(set(ACTIVATION_NAMES))],
    # the functions check the name in the recursion (its message lists the
    # names and is matched by tests: "Unknown activation")
    function=dict(constraints=[str]),
    cv=dict(
        type='str or list of str, default="relu"',
        doc="""
        Activation of the hidden layers, one of {activations}. A list is
        searched (one kernel pass per activation).
        """,
        constraints=[StrOptions(set(ACTIVATION_NAMES)), "array-like"],
    ),
)
_add(
    "activation_params",
    "dict, default=None",
    """
    Parameters of the activation, e.g. ``{"alpha": 0.1}`` for
    ``"leaky_relu"``, ``{"a": 1.0, "b": 2.0, "c": 0.0}`` for ``"erf"``
    (``a * erf(b * x) + c``), ``"sin"`` or ``"cos"``, ``{"a": 0.0, "b":
    1.0}`` for ``"abrelu"`` and ``{"gamma": 0.5}`` for ``"rbf"``. Missing
    ones take their defaults.
    """,
    [dict, None],
    estimator=dict(
        doc="""
        Parameters of the activation, e.g. ``{"alpha": 0.1}`` for
        ``"leaky_relu"``, ``{"a": 1.0, "b": 2.0, "c": 0.0}`` for ``"erf"``
        (``a * erf(b * x) + c``), ``"sin"`` or ``"cos"``, ``{"a": 0.0, "b":
        1.0}`` for ``"abrelu"`` and ``{"gamma": 0.5}`` for ``"rbf"``. Missing
        ones take their defaults. ``GridSearchCV`` can tune it with a list
        of dicts.
        """
    ),
    cv=dict(
        doc="""
        Parameters of the activation, applied to every searched activation.
        """
    ),
)
_add(
    "weight_std",
    "float, default=1.0",
    """
    Standard deviation of every Dense layer's weights (``W_std`` in
    neural-tangents).
    """,
    [Interval(Real, 0, None, closed="left")],
    conv=dict(
        doc="""
        Standard deviation of the weights of every Conv and of the Dense
        readout (``W_std``).
        """
    ),
    conv_estimator=dict(
        doc="""
        Standard deviation of the weights of every Conv and of the Dense
        readout (``W_std``).
        """
    ),
)
_add(
    "bias_std",
    "float or None, default=0.0",
    """
    Standard deviation of the biases (``b_std``). ``None`` means the layers
    have no bias parameter, which differs from ``0.0`` only in the
    ``"standard"`` parameterization.
    """,
    [Interval(Real, 0, None, closed="left"), None],
)
_add(
    "parameterization",
    '{"ntk", "standard"}, default="ntk"',
    "Parameterization of the Dense layers, as in neural-tangents.",
    [StrOptions(set(PARAMETERIZATIONS))],
    conv=dict(doc="Parameterization of the layers, as in neural-tangents."),
    conv_estimator=dict(doc="Parameterization of the layers, as in neural-tangents."),
)
_add(
    "width",
    "int, default=None",
    """
    Hidden width. Only the NTK of the ``"standard"`` parameterization
    depends on it, and it is required there; it is ignored otherwise (the
    NNGP does not depend on it).
    """,
    [Interval(Integral, 1, None, closed="left"), None],
    conv=dict(
        doc="""
        Channels of the hidden layers. Only the NTK of the ``"standard"``
        parameterization depends on it, and it is required there.
        """
    ),
    conv_estimator=dict(
        doc="""
        Channels of the hidden layers. Only the NTK of the ``"standard"``
        parameterization depends on it, and it is required there.
        """
    ),
)
_add(
    "frozen_layers",
    "int, default=0",
    """
    Number of leading Dense layers kept at their initialisation (Arora et
    al., 2020): their parameters add nothing to the NTK, which keeps only
    the later layers' and the readout's terms; the NNGP is unchanged. At
    most ``depth``: ``frozen_layers=depth`` trains the readout alone (in
    the ``"ntk"`` parameterization, the NNGP kernel).
    """,
    [Interval(Integral, 0, None, closed="left")],
    estimator=dict(
        doc="""
        Number of leading Dense layers kept at their initialisation (Arora
        et al., 2020): only the later layers and the readout are trained, so
        the NTK keeps only their terms. ``0`` trains every layer;
        ``frozen_layers=depth`` trains the readout alone (in the ``"ntk"``
        parameterization, the NNGP kernel). At most ``depth``, and only with
        ``kernel="ntk"`` (the NNGP already trains the readout alone).
        """
    ),
    cv=dict(
        type="int or list of int, default=0",
        doc="""
        Number of leading Dense layers kept at their initialisation (Arora et
        al., 2020): their parameters are not trained, so the NTK keeps only
        the later layers' terms; ``frozen_layers=depth`` trains the readout
        only (the NNGP). A list is searched; combinations with
        ``frozen_layers > depth`` are skipped. Only with ``kernel="ntk"``.
        """,
        constraints=[Interval(Integral, 0, None, closed="left"), "array-like"],
    ),
)
_add(
    "all_depths",
    "bool, default=False",
    """
    If True, return the results of the networks with ``1, ..., depth``
    hidden blocks, stacked along a new first axis (one recursion pass).
    """,
    ["boolean"],
    conv=dict(
        doc="""
        If True, return the results of the networks with ``1, ..., depth``
        blocks (each with its pooling), stacked along a new first axis, from
        one pass.
        """
    ),
)

# -- the ridge and the training --------------------------------------------------
_add(
    "alpha",
    "float, default=1.0",
    """
    Ridge added to the training kernel's diagonal (>= 0); see
    ``alpha_scale``.
    """,
    [Interval(Real, 0, None, closed="left")],
    empirical=dict(
        type="float, default=1e-3",
        doc="""
        Ridge added to the after-kernel's diagonal (>= 0); see
        ``alpha_scale``.
        """,
    ),
)
_add(
    "alpha_scale",
    '{"absolute", "mean_diag"}, default="absolute"',
    """
    How ``alpha`` is interpreted. ``"absolute"``: the ridge added to the
    kernel's diagonal, as in ``KernelRidge``. ``"mean_diag"``: ``alpha``
    times the mean of the training kernel's diagonal (weighted by
    ``sample_weight``), which is neural-tangents' ``diag_reg`` with its
    default ``trace / n`` scaling. The NTK's scale grows with depth, so
    a relative ridge keeps the same meaning across depths. The value used
    is stored in ``alpha_``.
    """,
    [StrOptions(set(ALPHA_SCALES))],
    cv=dict(
        type='{"absolute", "mean_diag"}, default="mean_diag"',
        doc="""
        ``"mean_diag"``: each alpha times the mean diagonal of the training
        kernel (neural-tangents' ``diag_reg``), which keeps its meaning
        across depths. ``"absolute"``: each alpha is the ridge itself. With
        ``cv=None`` or ``"evidence"`` the mean diagonal of the searched rows
        is used for every left-out row (exact LOO needs one ridge); with a
        splitter, that of each fold's training part, as a grid search would.

        .. versionchanged:: 0.1.0
           The default was ``"absolute"`` (with ``alphas=(0.1, 1.0, 10.0)``).
        """,
    ),
    conv_estimator=dict(
        doc="""
        ``"absolute"``: ``alpha`` is the ridge; ``"mean_diag"``: ``alpha``
        times the mean of the training kernel's diagonal (neural-tangents'
        ``diag_reg``). The value used is ``alpha_``.
        """
    ),
    empirical=dict(
        type='{"absolute", "mean_diag"}, default="mean_diag"',
        doc="""
        ``"mean_diag"`` multiplies ``alpha`` by the mean diagonal of the
        training kernel, which makes it independent of the kernel's scale
        (the empirical NTK grows with the width); ``"absolute"`` adds
        ``alpha`` as it is.
        """,
    ),
)
_add(
    "t",
    "float, default=None",
    """
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
    """,
    [Interval(Real, 0, None, closed="both"), None],
    conv_estimator=dict(
        doc="""
        Training time of gradient flow (``learning_rate * time``, the loss
        averaged over the ``y.size`` training values, as neural-tangents'
        ``gradient_descent_mse_ensemble``); ``None`` trains to convergence.
        """
    ),
)

# -- where and how the work runs ---------------------------------------------------
_add(
    "memory",
    "str or object with the joblib.Memory interface, default=None",
    """
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
    """,
    [None, str, HasMethods(["cache"])],
    conv_estimator=dict(
        doc="""
        Cache of the kernel matrices (CPU only), as for
        :class:`~sknetk.NTKRegressor`: a private folder path or a
        :class:`joblib.Memory`, keyed by the data and the network, so that a
        grid search over ``alpha`` computes each fold's kernels once.
        """
    ),
)
_add(
    "device",
    '{"auto", "cpu", "gpu"}, default="auto"',
    """
    Where to compute. ``"gpu"`` needs CuPy and a CUDA device (it raises
    :class:`~sknetk.exceptions.GPUUnavailableError` saying which is
    missing); ``"cpu"`` computes with NumPy; ``"auto"`` computes where a
    CuPy input lives, and moves NumPy input to the GPU only when one is
    available and the kernel has at least ``AUTO_GPU_MIN_ENTRIES``
    (4 million) entries. Outputs mirror inputs: NumPy in, NumPy out;
    CuPy in, CuPy out.
    """,
    [StrOptions(set(DEVICES))],
    # the functions check it with sknetk._device.check_device, whose message
    # ("device must be one of ...") tests match
    function=dict(constraints="no_validation"),
    diag=dict(
        doc="""
        Where to compute. ``"auto"`` computes where the input lives (the
        work is O(n_samples)); ``"gpu"`` needs CuPy and a CUDA device (it
        raises :class:`~sknetk.exceptions.GPUUnavailableError` saying which
        is missing); ``"cpu"`` computes with NumPy. Outputs mirror inputs.
        """
    ),
    conv=dict(
        doc="""
        ``"auto"`` computes where the input lives (NumPy on the CPU, CuPy on
        its GPU); ``"gpu"`` moves NumPy input to CuPy; ``"cpu"`` moves CuPy
        input to NumPy. Outputs mirror inputs.
        """
    ),
    estimator=dict(
        doc="""
        Where the kernels and the solve run. ``"gpu"`` uses CuPy and a CUDA
        device (the fused kernel and an in-place cuSOLVER Cholesky) and raises
        :class:`~sknetk.exceptions.GPUUnavailableError` saying whether CuPy or
        a device is missing; ``"cpu"`` uses NumPy/SciPy; ``"auto"`` uses the
        GPU when one is available and the kernel matrix has at least 4 million
        entries (``sknetk._device.AUTO_GPU_MIN_ENTRIES``). Fitted attributes
        are NumPy arrays in every case, so a model fitted on a GPU pickles and
        predicts on a machine without CuPy. CuPy inputs are accepted (copied
        to the host for validation); ``predict`` then returns a CuPy array.
        """
    ),
    cv=dict(
        doc="""
        Where the kernels and eigendecompositions are computed. ``"gpu"``
        needs CuPy and a CUDA device; ``"auto"`` uses the GPU when one is
        available and the kernel has at least
        ``sknetk._device.AUTO_GPU_MIN_ENTRIES`` entries. Fitted attributes
        are NumPy arrays either way.
        """
    ),
    conv_estimator=dict(
        doc="""
        Where the kernels and the solve run; ``"gpu"`` runs the same array
        code on CuPy, ``"auto"`` uses a GPU when one is available for
        kernels of at least 4 million entries. Fitted attributes are NumPy
        arrays.
        """
    ),
)
_add(
    "working_memory",
    "float, default=None",
    """
    Budget in MiB for the temporaries of the tiled computation; defaults
    to ``sklearn.get_config()["working_memory"]``. Smaller budgets give
    more, smaller tiles and the same result.
    """,
    [Interval(Real, 0, None, closed="neither"), None],
    conv=dict(
        doc="""
        Memory budget in MiB for the temporaries of the tiles of image pairs
        (``sklearn.get_config()["working_memory"]`` by default).
        """
    ),
    conv_diag=dict(doc="Memory budget in MiB (chunks of images)."),
    estimator=dict(
        doc="""
        Memory budget in MiB for the temporaries of the tiled kernel
        computations, defaulting to ``sklearn.get_config()["working_memory"]``.
        Prediction streams the test rows through blocks of this size, so it
        never holds the full ``n_test x n_train`` kernel.
        """
    ),
    cv=dict(
        doc="""
        Memory budget in MiB for the temporaries of the tiled kernel
        computations, defaulting to ``sklearn.get_config()["working_memory"]``.
        """
    ),
    conv_estimator=dict(
        doc="""
        Memory budget in MiB of the tiles of image pairs and of the
        prediction blocks (``sklearn.get_config()["working_memory"]``).
        """
    ),
    empirical=dict(doc="Memory budget in MiB of :func:`empirical_ntk`."),
)
_add(
    "n_jobs",
    "int, default=-1",
    "Threads over tiles (NumPy inputs). ``-1`` uses every core.",
    [Integral, None],
    estimator=dict(
        doc="""
        Number of threads computing kernel tiles; ``-1`` uses every core. A
        positive value also bounds the BLAS threads of ``fit`` and ``predict``
        (threadpoolctl).
        """
    ),
    conv_estimator=dict(doc="Threads computing kernel tiles; ``-1`` uses every core."),
)
_add(
    "dtype",
    '{None, "float64", "float32"}, default=None',
    """
    Compute and output precision. ``None`` means float64, whatever the
    input dtype (float32 inputs are promoted).
    """,
    [None, _FloatDtype()],
)
_add(
    "verbose",
    "int, default=0",
    """
    ``0`` is silent; ``>= 1`` shows a progress bar over the tiles (or row
    blocks) on standard error, with tqdm when it is installed.
    """,
    ["verbose"],
    estimator=dict(
        doc="""
        ``1`` shows a progress bar over the kernel tiles (and prediction row
        blocks) on standard error, tqdm's when it is installed, and prints
        the solver ``"auto"`` chose and the Nystrom solver's strategy and
        conjugate-gradient summary; ``2`` also every iteration.
        """
    ),
    cv=dict(
        doc="""
        ``0`` is silent; ``>= 1`` shows progress bars on standard error over
        the kernel tiles and over the depths (and folds) of the search.
        """
    ),
)

# -- the solver ------------------------------------------------------------------
_add(
    "solver",
    '{"auto", "cholesky", "nystrom"}, default="auto"',
    """
    ``"cholesky"``: the exact solver, with the ``n x n`` training kernel
    in memory and O(n^3) time. ``"nystrom"``: kernel ridge restricted to
    ``n_centers`` training rows drawn uniformly (FALKON), solved by
    conjugate gradient with the centres' Cholesky preconditioner while
    the kernel rows are streamed in blocks within ``working_memory``:
    O(n m) time per iteration and no ``n x n`` matrix; with
    ``n_centers >= n_samples`` it equals the exact solver. ``"auto"``:
    the exact solver while the ``n x n`` float64 kernel (``8 n^2``
    bytes) fits ``working_memory`` (on the GPU: 90% of the device's free
    memory, since the GPU fit factorises in place), and for a finite
    ``t`` or with ``memory``; the Nystrom solver beyond and for dask
    arrays. ``verbose`` says which. A finite ``t``, ``memory``,
    ``predict(return_std=True)``, ``return_cov`` and
    ``predict_trajectory`` need the exact kernel, and raise
    ``ValueError`` with ``"nystrom"``. See :ref:`scaling`.
    """,
    [StrOptions(set(SOLVER_OPTIONS))],
)
_add(
    "n_centers",
    "int, default=5000",
    """
    Number of Nystrom centres ``m`` (``solver="nystrom"``): O(m^2)
    memory and O(m^3) time for the preconditioner. More centres bring
    the model closer to the exact one.
    """,
    [Interval(Integral, 1, None, closed="left")],
)
_add(
    "max_iter",
    "int, default=100",
    """
    Largest number of conjugate-gradient iterations of the Nystrom
    solver; a ``ConvergenceWarning`` says when it is reached first.
    """,
    [Interval(Integral, 1, None, closed="left")],
)
_add(
    "tol",
    "float, default=1e-6",
    """
    The Nystrom solver's conjugate gradient stops when every target's
    residual of the preconditioned normal equations is at most ``tol``
    times its initial value.
    """,
    [Interval(Real, 0, None, closed="left")],
)
_add(
    "random_state",
    "int, RandomState instance or None, default=None",
    """
    Seed of the uniform draw of the Nystrom centres; pass an int for
    reproducible fits. The exact solver is deterministic and ignores it.
    """,
    ["random_state"],
    cv=dict(
        doc="""
        Seed of the subset drawn when there are more than
        ``max_search_samples`` rows (and of ``best_estimator_``).
        """
    ),
    empirical=dict(
        doc="""
        When not None, sets the network's ``random_state`` (its
        initialisation and batch order).
        """
    ),
)

# -- the convolutional network ---------------------------------------------------
_add(
    "image_shape",
    "tuple of int, default=None",
    """
    ``(H, W, C)`` (or ``(H, W)``: one channel) of the images when ``X``
    holds flattened images, one per row in NHWC order (``X.reshape(n,
    -1)`` of an NHWC array); ignored for image arrays ``(n, H, W, C)``
    (then it must match) and ``(n, H, W)`` (one channel). ``None`` with
    flattened rows: square single-channel images (the number of features
    must be a perfect square, as for ``load_digits`` and MNIST).
    """,
    [tuple, list, None],
    conv_estimator=dict(
        doc="""
        ``(H, W, C)`` (or ``(H, W)``, one channel) of the images, each row of
        ``X`` being one image flattened in NHWC order (``images.reshape(n,
        -1)``). ``None``: NHWC arrays ``(n, H, W, C)`` give their own shape;
        rows of ``d`` features are a square single-channel image when ``d``
        is a perfect square (``load_digits``: 8x8, MNIST: 28x28), and
        otherwise a ``1 x d`` single-channel image (a 1-D signal, so that any
        table fits). The shape used is ``image_shape_``.
        """
    ),
)
_add(
    "filter_shape",
    "int or tuple of int, default=(3, 3)",
    "``(fh, fw)`` of every Conv (stride 1).",
    [Interval(Integral, 1, None, closed="left"), "array-like"],
)
_add(
    "padding",
    '{"SAME", "CIRCULAR", "VALID"}, default="SAME"',
    """
    Border of the Conv: zero padding (the map keeps its size), periodic
    padding, or none (the map shrinks by ``f - 1``).
    """,
    [StrOptions(set(PADDINGS) | {p.lower() for p in PADDINGS})],
)
_add(
    "pool_after",
    "sequence of int, default=()",
    """
    0-based indices of the blocks followed by
    ``AvgPool(pool_window, strides=pool_window, "VALID")``.
    """,
    ["array-like", None],
)
_add(
    "pool_window",
    "int or tuple of int, default=(2, 2)",
    "``(ph, pw)`` of those poolings.",
    [Interval(Integral, 1, None, closed="left"), "array-like"],
)
_add(
    "readout",
    '{"gap", "flatten"}, default="gap"',
    """
    ``"gap"``: global average pooling, the mean of the last feature map
    over its pixels (translation-invariant features; all ``P^2`` pixel
    pairs enter the kernel, O(P^2) work per entry for ``P = H W``
    pixels); ``"flatten"``: the flattened map (only the ``P`` diagonal
    pixel pairs, O(P) without pooling, much faster). See :ref:`conv`.
    """,
    [StrOptions(set(READOUTS))],
)

# -- the model-selection grid ------------------------------------------------------
_add(
    "alphas",
    "array-like of float, default=DEFAULT_ALPHAS",
    """
    Ridge values to try (each > 0), interpreted as in
    :class:`~sknetk.NTKRegressor` (see ``alpha_scale``). The default is 15
    values half a decade apart from 1e-5 to 100, relative to the kernel's
    mean diagonal. A :class:`~sknetk.exceptions.GridEdgeWarning` says
    when the chosen value is the smallest or the largest of the grid.
    """,
    ["array-like", Interval(Real, 0, None, closed="neither")],
    conv_estimator=dict(
        type="array-like of float, default=(1e-4, 1e-3, 1e-2, 1e-1, 1)",
        doc="Candidate ridges (> 0), read with ``alpha_scale``.",
    ),
)
_add(
    "depths",
    "array-like of int, default=(1, 2, 3, 4, 5)",
    """
    Numbers of hidden layers to try. All depths come from one pass of the
    kernel recursion up to ``max(depths)``.
    """,
    ["array-like", Interval(Integral, 1, None, closed="left")],
    conv_estimator=dict(
        type="array-like of int, default=None",
        doc="""
        Candidate depths; ``None``: every depth ``1..depth``. All come from
        one pass of the recursion (the deepest network's).
        """,
        constraints=["array-like", None],
    ),
)
_add(
    "cv",
    'int, cross-validation generator, iterable or "evidence", default=None',
    """
    ``None``: efficient exact leave-one-out. ``"evidence"``: the exact
    log marginal likelihood of the Gaussian process
    ``y ~ N(0, s2 (K + alpha I))`` with the output scale ``s2`` at its
    maximum (``scoring`` must then be None). Otherwise as in
    ``GridSearchCV`` (an int is a number of {int_cv} folds; group
    splitters such as ``GroupKFold`` take ``groups`` from :meth:`fit`);
    the kernel is still computed once per depth over all rows and sliced
    per fold. See :ref:`model_selection`.
    """,
    ["cv_object", StrOptions({"evidence"})],
)
_add(
    "scoring",
    "str or callable, default=None",
    """
    A scorer name or callable ``scorer(estimator, X, y)``. ``None``
    means {default_scoring}.
    """,
    [StrOptions(set(get_scorer_names())), callable, None],
)
_add(
    "max_search_samples",
    "int or None, default=1000",
    """
    The search runs on at most this many rows, drawn at random
    ({subsample}) with ``random_state``; ``best_estimator_`` is then
    fitted on all rows. The search costs one ``O(m^3)`` eigendecomposition
    per depth (``m`` rows), the final fit one ``O(n^3 / 3)`` Cholesky
    factorisation. ``None`` searches on every row.
    """,
    [Interval(Integral, 2, None, closed="left"), None],
)

#: The fully connected network's parameters (the fields of ``KernelSpec``),
#: in the public signatures' order.
NETWORK = (
    "depth",
    "activation",
    "activation_params",
    "weight_std",
    "bias_std",
    "parameterization",
    "width",
    "frozen_layers",
)
#: The convolutional network's parameters (``ConvKernelSpec``; no frozen
#: layers there).
CONV_NETWORK = (
    "depth",
    "activation",
    "activation_params",
    "weight_std",
    "bias_std",
    "parameterization",
    "width",
    "filter_shape",
    "padding",
    "pool_after",
    "pool_window",
    "readout",
)


# -- the API ---------------------------------------------------------------------
def _split(name, context):
    if ":" in name:
        name, context = name.split(":", 1)
    if name not in PARAMS:
        raise KeyError(f"{name!r} is not in sknetk._params.PARAMS.")
    return PARAMS[name], context


def _fill(text, fmt, width=72):
    """``text`` with ``{key}`` replaced for each key of ``fmt`` (other braces,
    such as a type's ``{"ntk", "nngp"}``, are left alone); the paragraphs
    where a value went are wrapped again to ``width`` columns."""
    paragraphs = text.split("\n\n")
    for i, paragraph in enumerate(paragraphs):
        filled = paragraph
        for key, value in fmt.items():
            filled = filled.replace("{" + key + "}", str(value))
        if filled != paragraph and max(map(len, filled.splitlines())) > width:
            filled = textwrap.fill(
                filled, width, break_long_words=False, break_on_hyphens=False
            )
        paragraphs[i] = filled
    return "\n\n".join(paragraphs)


def param_docs(names, indent=4, context=None, blank_lines=False, **fmt):
    """The numpydoc entries of ``names``, indented by ``indent`` spaces.

    Parameters
    ----------
    names : iterable of str
        Parameter names in :data:`PARAMS`, in order; ``"name:variant"``
        picks a named variant of that one entry.
    indent : int, default=4
        Spaces before ``name :`` (the description gets four more).
    context : str, default=None
        The context whose variants are used (see the module's docstring);
        ``None``: the entries' defaults.
    blank_lines : bool, default=False
        Separate the entries by blank lines (the estimators' style).
    **fmt : str
        Values of placeholders such as ``{int_cv}`` in the texts;
        ``{activations}`` defaults to the quoted activation names.

    Returns
    -------
    doc : str
        The entries, without a trailing newline.

    Examples
    --------
    >>> from sknetk._params import param_docs
    >>> print(param_docs(["depth"], context="conv"))
        depth : int, default=3
            Number of ``Conv -> activation`` blocks.
    """
    fmt.setdefault("activations", ", ".join(f'``"{a}"``' for a in ACTIVATION_NAMES))
    pad = " " * indent
    entries = []
    for name in names:
        param, ctx = _split(name, context)
        entry = param.resolve(ctx)
        doc = _fill(entry["doc"], fmt, width=max(40, 80 - indent - 4))
        doc = textwrap.indent(doc, pad + "    ")
        entries.append(f"{pad}{param.name} : {_fill(entry['type'], fmt)}\n{doc}")
    return ("\n\n" if blank_lines else "\n").join(entries)


def constraints(names, context=None):
    """``{name: constraint list}`` of ``names``, the table's own lists.

    Parameters
    ----------
    names : iterable of str
        Parameter names in :data:`PARAMS` (``"name:variant"`` as in
        :func:`param_docs`).
    context : str, default=None
        The context whose variants are used.

    Returns
    -------
    constraints : dict
        For ``_parameter_constraints`` or ``validate_params``; the lists are
        shared with every other user of the same entry (do not modify them).

    Examples
    --------
    >>> from sknetk._params import constraints
    >>> constraints(["depth"])
    {'depth': [<sklearn.utils._param_validation.Interval object at ...>]}
    """
    out = {}
    for name in names:
        param, ctx = _split(name, context)
        out[param.name] = param.resolve(ctx)["constraints"]
    return out


def default(name, context=None):
    """The default value of ``name`` in ``context``, read from its type line.

    The type line of every entry ends with ``", default=<value>"``; the value
    is a Python literal (evaluated with :func:`ast.literal_eval`), so the
    signatures built from the table (:func:`param_fields`) take exactly the
    default that the docstrings state.

    Parameters
    ----------
    name : str
        A parameter of :data:`PARAMS` (``"name:variant"`` as in
        :func:`param_docs`).
    context : str, default=None
        The context whose variants are used.

    Returns
    -------
    value : object
        The default (``None``, a number, a string or a tuple).

    Raises
    ------
    ValueError
        If the entry's default is not a literal (such as ``DEFAULT_ALPHAS``):
        its users then declare it themselves.

    Examples
    --------
    >>> from sknetk._params import default
    >>> default("depth"), default("alpha_scale", "cv")
    (3, 'mean_diag')
    """
    param, ctx = _split(name, context)
    type_line = param.resolve(ctx)["type"]
    _, found, value = type_line.rpartition(", default=")
    try:
        if not found:
            raise ValueError
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(
            f"{param.name!r} has no literal default in context {ctx!r}: {type_line!r}."
        ) from None


def param_fields(class_name, names, context):
    """A dataclass of keyword-only fields ``names``, defaults from the table.

    The estimators are dataclasses (``eq=False, repr=False``: scikit-learn's
    ``BaseEstimator`` gives the representation, and estimators compare by
    identity). Their shared parameters come from a base made here, so a
    parameter added to the table and to a names tuple such as
    :data:`NETWORK` reaches every estimator's signature, ``get_params``,
    docstring and validation without editing the estimator modules; an
    estimator declares only its own parameters as fields. The generated
    ``__init__`` only stores the arguments (scikit-learn's contract).

    Parameters
    ----------
    class_name : str
        Name of the generated class.
    names : iterable of str
        Parameters of :data:`PARAMS`, in the signature's order.
    context : str
        The context whose variants give the defaults (:func:`default`).

    Returns
    -------
    cls : type
        A dataclass with one keyword-only field per name.

    Examples
    --------
    >>> import inspect
    >>> from sknetk._params import param_fields
    >>> Network = param_fields("Network", ["depth", "activation"], "estimator")
    >>> str(inspect.signature(Network))
    "(*, depth=3, activation='relu')"
    >>> vars(Network(depth=2))
    {'depth': 2, 'activation': 'relu'}
    """
    fields = [
        (name, object, field(default=default(name, context), kw_only=True))
        for name in names
    ]
    cls = dataclasses.make_dataclass(class_name, fields, eq=False, repr=False)
    cls.__module__ = __name__  # not "types" (make_dataclass on Python < 3.12)
    return _plain_init(cls)


def _plain_init(cls):
    # The fields' annotations are not types users should read (``object``):
    # the signature shows names and defaults, as a hand-written one would.
    cls.__init__.__annotations__ = {}
    return cls


def estimator_dataclass(cls):
    """Class decorator of the estimators: a dataclass with a plain signature.

    ``dataclass(eq=False, repr=False)``: the generated ``__init__`` stores
    the fields (the class's own and those of the :func:`param_fields` bases)
    and nothing else; comparison stays by identity and the representation
    is scikit-learn's. Own fields are declared with their defaults; those
    after the ``dataclasses.KW_ONLY`` marker are keyword-only and come after
    the bases' fields in the signature.

    Parameters
    ----------
    cls : type
        The estimator class.

    Returns
    -------
    cls : type
        The same class, with its ``__init__``.

    Examples
    --------
    >>> import inspect
    >>> from sklearn.base import BaseEstimator
    >>> from sknetk._params import estimator_dataclass, param_fields
    >>> @estimator_dataclass
    ... class Model(BaseEstimator, param_fields("Net", ["depth"], "estimator")):
    ...     alpha: float = 1.0
    >>> str(inspect.signature(Model))
    '(alpha=1.0, *, depth=3)'
    >>> Model(0.5, depth=2)
    Model(alpha=0.5, depth=2)
    """
    return _plain_init(dataclass(eq=False, repr=False)(cls))


def _fill_docstring(obj, names, context, blank_lines, placeholder, fmt):
    pattern = re.compile(
        r"^( *)" + re.escape("{" + placeholder + "}") + r"$", re.MULTILINE
    )
    doc = obj.__doc__
    match = pattern.search(doc or "")
    if match is None:
        raise ValueError(
            f"{obj.__qualname__}'s docstring has no line {{{placeholder}}}."
        )
    text = param_docs(names, len(match.group(1)), context, blank_lines, **fmt)
    obj.__doc__ = doc[: match.start()] + text + doc[match.end() :]
    return obj


def fill_doc(names, context=None, *, blank_lines=False, placeholder="params", **fmt):
    """Decorator: replace the line ``{params}`` of a docstring by :func:`param_docs`.

    Works on functions and classes. The indentation of the placeholder line
    is the entries' indentation.

    Parameters
    ----------
    names : iterable of str
        As in :func:`param_docs`.
    context : str, default=None
        As in :func:`param_docs`.
    blank_lines : bool, default=False
        As in :func:`param_docs`.
    placeholder : str, default="params"
        The name between braces on the line replaced.
    **fmt : str
        Placeholder values, as in :func:`param_docs`.

    Returns
    -------
    decorator : callable
        Returns the object it is given, its docstring filled.

    Examples
    --------
    >>> from sknetk._params import fill_doc
    >>> @fill_doc(["depth"])
    ... def f(depth=3):
    ...     '''Do it.
    ...
    ...     Parameters
    ...     ----------
    ...     {params}
    ...     '''
    >>> "depth : int, default=3" in f.__doc__
    True
    """
    names = tuple(names)

    def decorator(obj):
        return _fill_docstring(obj, names, context, blank_lines, placeholder, fmt)

    return decorator


def validated(
    names, context="function", *, extra=None, doc=True, signature=False, **fmt
):
    """Decorator of a public function: ``validate_params`` and its docstring.

    The function's parameters ``names`` are validated by scikit-learn's
    :func:`~sklearn.utils._param_validation.validate_params` with the
    constraints of :func:`constraints` (``prefer_skip_nested_validation=True``:
    the estimators calling it have validated their parameters already), and
    the line ``{params}`` of its docstring is replaced by :func:`param_docs`.

    Parameters
    ----------
    names : iterable of str
        The table's parameters of the function (documented in the order of
        its signature).
    context : str, default="function"
        As in :func:`param_docs`.
    extra : dict, default=None
        Constraints of the function's own parameters (its arrays, ...),
        validated with the table's.
    doc : bool, default=True
        Fill the ``{params}`` line of the docstring.
    signature : bool, default=False
        Give the function the keyword-only parameters ``names`` with the
        table's defaults (:func:`default`) after its own (names of its own
        parameters, such as ``X``, are documented only): the function is
        written ``f(X, Y=None, **params)`` and called with every keyword
        bound (``params`` holds all of ``names``), while its public
        signature (``help``, ``inspect.signature``, the documentation) lists
        them one by one, as a hand-written one would. The kernel functions'
        long signatures are written once, here, instead of once per
        function.
    **fmt : str
        Placeholder values, as in :func:`param_docs`.

    Returns
    -------
    decorator : callable
        Returns the validating wrapper (``functools.wraps`` of the function),
        whose ``parameter_constraints`` attribute is the dict it validates
        with.

    Examples
    --------
    >>> from sknetk._params import validated
    >>> @validated(["depth"])
    ... def f(*, depth=3):
    ...     '''Do it.
    ...
    ...     Parameters
    ...     ----------
    ...     {params}
    ...     '''
    ...     return depth
    >>> f(depth=0)
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'depth' parameter ...
    """
    names = tuple(names)
    table = constraints(names, context)
    table.update(extra or {})

    def decorator(function):
        if signature:
            function = _with_table_signature(function, names, context)
        # documented in the signature's order (numpydoc's PR03)
        order = list(inspect.signature(function).parameters)
        missing = [name for name in names if name.split(":")[0] not in order]
        if missing:
            raise TypeError(f"{function.__qualname__} has no parameters {missing}.")
        in_order = sorted(names, key=lambda name: order.index(name.split(":")[0]))
        if doc:
            _fill_docstring(function, in_order, context, False, "params", fmt)
        wrapper = validate_params(table, prefer_skip_nested_validation=True)(function)
        wrapper.parameter_constraints = table  # what it validates, for tests
        return wrapper

    return decorator


def _with_table_signature(function, names, context):
    """``function(own..., **params)`` with the public signature ``own...,
    *, name=default, ...`` for ``names`` (see :func:`validated`)."""
    own = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    own_names = {p.name for p in own}  # such as X and Y: documented only
    table = [
        inspect.Parameter(
            name.split(":")[0],
            inspect.Parameter.KEYWORD_ONLY,
            default=default(name, context),
        )
        for name in names
        if name.split(":")[0] not in own_names
    ]
    public_signature = inspect.Signature(own + table)

    @functools.wraps(function)
    def public(*args, **kwargs):
        bound = public_signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return function(**bound.arguments)

    public.__signature__ = public_signature
    return public
