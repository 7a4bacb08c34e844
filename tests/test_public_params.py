"""One parameter table: the kernel functions and the estimators validate from it.

Every public kernel function (fully connected and convolutional) rejects a
value of the wrong type, and a value of the right type outside the allowed
range, of each parameter of :mod:`sknetk._params` it takes, with
scikit-learn's ``InvalidParameterError`` naming the parameter and the
function (the way ``sklearn/tests/test_public_functions.py`` checks
scikit-learn's functions). The constraints the functions validate with and
those of the estimators' ``_parameter_constraints`` are the table's own
lists: the same objects, not copies, so that they cannot drift apart.
"""

import inspect

import numpy as np
import pytest
from sklearn.utils._param_validation import (
    InvalidParameterError,
    generate_invalid_param_val,
    make_constraint,
)

import sknetk
from sknetk import conv, kernels
from sknetk._params import (
    ALPHA_SCALES,
    PADDINGS,
    PARAMS,
    READOUTS,
    constraints,
    param_docs,
)

X = np.random.default_rng(0).normal(size=(3, 4))
IMAGES = np.random.default_rng(1).normal(size=(2, 4, 4, 1))

# function -> the arguments it needs
FUNCTIONS = {
    kernels.ntk_kernel: (X,),
    kernels.nngp_kernel: (X,),
    kernels.nngp_ntk_kernels: (X,),
    kernels.ntk_diag: (X,),
    kernels.nngp_diag: (X,),
    kernels.kernel_matvec: (X, X, np.ones(3)),
    conv.ntk_kernel: (IMAGES,),
    conv.nngp_kernel: (IMAGES,),
    conv.nngp_ntk_kernels: (IMAGES,),
    conv.ntk_diag: (IMAGES,),
    conv.nngp_diag: (IMAGES,),
}

ESTIMATORS = [
    getattr(sknetk, name)
    for name in (
        "NTKRegressor",
        "NTKClassifier",
        "NTKRegressorCV",
        "NTKClassifierCV",
        "CNTKRegressor",
        "CNTKClassifier",
        "CNTKRegressorCV",
        "CNTKClassifierCV",
    )
    if hasattr(sknetk, name)
]

# Where a kernel function validates a parameter differently from the
# estimators (a named variant of the table's entry), and why: the functions
# keep the messages of their own checks, which tests match.
FUNCTION_VARIANTS = {
    "activation": "the name is checked by the recursion ('Unknown activation')",
    "device": "sknetk._device.check_device ('device must be one of')",
}
#: Documented from the table but not validated by it: the input arrays, which
#: the functions check themselves in any array namespace (test_bad_input.py).
ARRAYS = ("X", "Y")


def _name(function):
    return f"{function.__module__}.{function.__qualname__}"


def _cases():
    for function, args in FUNCTIONS.items():
        for name in function.parameter_constraints:
            yield pytest.param(function, args, name, id=f"{_name(function)}-{name}")


class _BadType:
    """An object that satisfies no constraint of the table."""


@pytest.mark.parametrize("function, args, name", list(_cases()))
def test_functions_reject_invalid_values(function, args, name):
    """A wrong type, and each constraint's out-of-range value, raise
    InvalidParameterError naming the parameter and the function."""
    table = function.parameter_constraints[name]
    if table == "no_validation":
        assert name in FUNCTION_VARIANTS or name in ARRAYS
        return
    message = f"The '{name}' parameter of {function.__qualname__} must be"
    with pytest.raises(InvalidParameterError, match=message):
        function(*args, **{name: _BadType()})
    checked = [make_constraint(c) for c in table]
    for constraint in checked:
        try:
            bad = generate_invalid_param_val(constraint)
        except NotImplementedError:
            continue
        if any(other.is_satisfied_by(bad) for other in checked):
            continue  # valid by another constraint of the list
        with pytest.raises(InvalidParameterError, match=message):
            function(*args, **{name: bad})


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(depth=0), "depth"),
        (dict(depth=2.0), "depth"),
        (dict(weight_std=-1.0), "weight_std"),
        (dict(weight_std=np.inf), "weight_std"),
        (dict(bias_std=np.nan), "bias_std"),
        (dict(width=0), "width"),
        (dict(frozen_layers=-1), "frozen_layers"),
        (dict(parameterization="mup"), "parameterization"),
        (dict(activation_params=[("alpha", 0.1)]), "activation_params"),
        (dict(all_depths="yes"), "all_depths"),
        (dict(working_memory=0), "working_memory"),
        (dict(n_jobs=1.5), "n_jobs"),
        (dict(dtype="float16"), "dtype"),
        (dict(dtype=np.int64), "dtype"),
        (dict(verbose=-1), "verbose"),
    ],
)
def test_examples_of_invalid_values(kwargs, name):
    """Concrete values users get wrong, on the most used function."""
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        kernels.ntk_kernel(X, **kwargs)


def test_valid_dtypes_pass():
    """The dtype constraint takes strings, NumPy types and dtypes."""
    ref = kernels.ntk_kernel(X, dtype="float32")
    for dtype in (np.float32, np.dtype("float32")):
        assert kernels.ntk_kernel(X, dtype=dtype).dtype == ref.dtype
    assert kernels.ntk_kernel(X, dtype=np.float64).dtype == np.float64


def test_domain_checks_after_validation_keep_their_messages():
    """What no single constraint sees is checked by the recursion."""
    with pytest.raises(ValueError, match="Unknown activation"):
        kernels.ntk_kernel(X, activation="tanh")
    with pytest.raises(ValueError, match=r"frozen_layers must be .*\[0, depth=2\]"):
        kernels.ntk_kernel(X, depth=2, frozen_layers=3)
    with pytest.raises(ValueError, match="width"):
        kernels.ntk_kernel(X, parameterization="standard")
    with pytest.raises(ValueError, match="device must be one of"):
        kernels.ntk_diag(X, device="tpu")
    with pytest.raises(ValueError, match="pool_after"):
        conv.ntk_kernel(IMAGES, pool_after=[5])


def test_functions_document_every_table_parameter():
    """Each validated parameter is documented, with the table's type line."""
    for function in FUNCTIONS:
        doc = inspect.getdoc(function)
        for name in function.parameter_constraints:
            assert f"\n{name} : " in doc, (_name(function), name)


def test_functions_and_estimators_share_the_table():
    """The same name has the same constraint object in the functions and the
    estimators, except the documented function variants."""
    estimator_lists = {}
    for Estimator in ESTIMATORS:
        for name, table in Estimator._parameter_constraints.items():
            if name in PARAMS:
                estimator_lists.setdefault(name, []).append(table)
    assert {"depth", "weight_std", "device", "working_memory"} <= set(estimator_lists)
    different = set()
    for function in FUNCTIONS:
        for name, table in function.parameter_constraints.items():
            # the function's list is one of the table's (not a copy)
            assert _from_the_table(name, table), (_name(function), name)
            if name in estimator_lists and table is not PARAMS[name].constraints:
                different.add(name)
    assert different == set(FUNCTION_VARIANTS)
    # directly: the regressor and the kernel function hold the same lists
    model, function = sknetk.NTKRegressor, kernels.kernel_matvec
    shared = set(model._parameter_constraints) & set(function.parameter_constraints)
    assert {"kernel", "depth", "frozen_layers", "n_jobs", "verbose"} <= shared
    for name in shared - set(FUNCTION_VARIANTS):
        assert (
            model._parameter_constraints[name] is function.parameter_constraints[name]
        ), name


def _from_the_table(name, table):
    variants = [PARAMS[name].constraints] + [
        v["constraints"] for v in PARAMS[name].variants.values() if "constraints" in v
    ]
    return any(table is v for v in variants)


def test_estimator_constraints_come_from_the_table():
    """Every table parameter of an estimator has one of the table's lists."""
    copies = {
        (Estimator.__name__, name)
        for Estimator in ESTIMATORS
        for name, table in Estimator._parameter_constraints.items()
        if name in PARAMS and not _from_the_table(name, table)
    }
    assert not copies, f"constraints written out instead of taken: {sorted(copies)}"


def test_option_tuples_have_one_home():
    """The option tuples the code acts on are _params' own objects."""
    from sknetk import _conv, _solver, conv

    assert _conv.PADDINGS is PADDINGS and _conv.READOUTS is READOUTS
    assert conv.PADDINGS is PADDINGS and conv.READOUTS is READOUTS
    assert _solver.ALPHA_SCALES is ALPHA_SCALES
    assert kernels.ACTIVATION_NAMES == tuple(sorted(sknetk._activations.ACTIVATIONS))


def test_param_docs_and_constraints_api():
    """Variants by context and by name; the constraint lists are shared."""
    conv_depth = param_docs(["depth"], context="conv")
    assert "Conv -> activation" in conv_depth
    assert param_docs(["depth:conv"]) == conv_depth
    # a context without a variant falls back along its chain
    assert param_docs(["device"], context="conv_diag") == param_docs(
        ["device"], context="conv"
    )
    cv = constraints(["frozen_layers"], "cv")["frozen_layers"]
    assert "array-like" in cv
    assert constraints(["depth"])["depth"] is constraints(["depth"], "cv")["depth"]
    with pytest.raises(KeyError, match="nope"):
        param_docs(["nope"])
    with pytest.raises(ValueError, match="Unknown context"):
        param_docs(["depth"], context="nope")
