"""Fused CUDA kernel for the layer recursion (CuPy), and GPU memory planning.

One ``cupy.ElementwiseKernel`` reads the Gram entry ``<x, y> / d`` and the two
rows' per-layer variances and walks all layers in registers, writing the NNGP
and/or NTK (of every depth, when asked): one read and one write per entry
instead of one pass over memory per elementwise operation.

The activations with a fused form are the ABReLU family (relu, leaky_relu,
abs, abrelu), erf and sigmoid_like, gelu, sin and cos, rbf, sign and identity:
every registered activation. An activation added to the registry without a
fused form here falls back to the generic array-API path.

CuPy is imported inside the functions only.
"""

import math

import numpy as np

_PI = math.pi

# activation name -> (id in the CUDA switch, function of params -> 4 floats)
_SIGMOID_B = 1 / 2.4020563531719796
_FUSED = {
    "relu": (0, lambda: (0.0, 1.0, 0.0, 0.0)),
    "abs": (0, lambda: (-1.0, 1.0, 0.0, 0.0)),
    "leaky_relu": (0, lambda alpha: (alpha, 1.0, 0.0, 0.0)),
    "abrelu": (0, lambda a, b: (a, b, 0.0, 0.0)),
    "erf": (1, lambda a, b, c: (a, b, c, 0.0)),
    "sigmoid_like": (1, lambda: (0.5, _SIGMOID_B, 0.5, 0.0)),
    "gelu": (2, lambda: (0.0, 0.0, 0.0, 0.0)),
    "sin": (3, lambda a, b, c: (a, b, c, 0.0)),
    "cos": (3, lambda a, b, c: (a, b, c + _PI / 2, 0.0)),
    "rbf": (4, lambda gamma: (gamma, 0.0, 0.0, 0.0)),
    "sign": (5, lambda: (0.0, 0.0, 0.0, 0.0)),
    "identity": (6, lambda: (0.0, 0.0, 0.0, 0.0)),
}

# Device function: the dual and derivative dual of each activation. Written
# as plain C++ templates so that the same text also compiles with a host C++
# compiler (the CPU test suite checks it against the NumPy path that way).
DUAL_SOURCE = r"""
template <typename T>
__device__ __host__ inline T sknetk_clip1(T x) {
  return x > T(1) ? T(1) : (x < T(-1) ? T(-1) : x);
}

// q1 q2 - k^2 >= 0 without cancellation for huge variances
template <typename T>
__device__ __host__ inline T sknetk_gap(T k, T q1, T q2) {
  const T root = sqrt(q1) * sqrt(q2);
  const T absk = k < T(0) ? -k : k;
  const T gap = (root - absk) * (root + absk);
  return gap > T(0) ? gap : T(0);
}

template <typename T>
__device__ __host__ inline void sknetk_dual(int act, const T* ap, T& sigma,
                                            T q1, T q2, T& dot) {
  const T pi = T(3.14159265358979323846);
  // |rho| within a few ulps of 1: parallel rows up to rounding
  const T snap = T(1) - T(4) * (sizeof(T) == 4 ? T(5.9604644775390625e-08)
                                               : T(1.1102230246251565e-16));
  if (act == 0 || act == 5) {  // ABReLU family, sign
    const T norm = sqrt(q1) * sqrt(q2);
    T rho = norm > T(0) ? sknetk_clip1(sigma / norm) : T(0);
    if (rho > snap) rho = T(1);
    if (rho < -snap) rho = T(-1);
    const T angle = acos(rho);
    if (act == 5) {
      sigma = T(1) - angle * (T(2) / pi);
      dot = T(0);
      return;
    }
    const T a = ap[0], b = ap[1];
    const T factor = (a - b) * (a - b) / (T(2) * pi);
    const T sin_angle = sqrt((T(1) - rho) * (T(1) + rho));
    dot = (a * a + b * b) / T(2) - factor * angle;
    sigma = norm * (factor * sin_angle + dot * rho);
  } else if (act == 1) {  // a * erf(b x) + c
    const T a = ap[0], b2 = ap[1] * ap[1], c = ap[2];
    const T root = sqrt(T(1) + T(2) * b2 * (q1 + q2)
                        + T(4) * b2 * b2 * sknetk_gap(sigma, q1, q2));
    sigma = a * a * (T(2) / pi) * atan2(T(2) * b2 * sigma, root) + c * c;
    dot = a * a * b2 * (T(4) / pi) / root;
  } else if (act == 2) {  // gelu
    const T k = sigma;
    const T prod = q1 * q2;
    const T prod1 = (q1 + T(1)) * (q2 + T(1));
    const T delta2 = T(1) + q1 + q2 + sknetk_gap(k, q1, q2);
    const T delta = sqrt(delta2);
    const T angle = atan2(k, delta);
    sigma = ((k * k + prod * delta2) / (prod1 * delta) + k * angle) / (T(2) * pi)
            + T(0.25) * k;
    dot = T(0.25) + angle / (T(2) * pi)
          + k / delta / (T(2) * pi)
                * (T(1) / delta2 + (T(1) - prod) / prod1 + T(1));
  } else if (act == 3) {  // a * sin(b x + c)
    const T a = ap[0], b2 = ap[1] * ap[1], c = ap[2];
    const T s = q1 + q2;
    const T e_minus = exp(T(-0.5) * b2 * (s - T(2) * sigma));
    const T e_plus = exp(T(-0.5) * b2 * (s + T(2) * sigma)) * cos(T(2) * c);
    sigma = a * a / T(2) * (e_minus - e_plus);
    dot = a * a / T(2) * b2 * (e_minus + e_plus);
  } else if (act == 4) {  // rbf
    const T gamma = ap[0];
    sigma = exp(-gamma * (q1 + q2 - T(2) * sigma));
    dot = T(2) * gamma * sigma;
  } else {  // identity
    dot = T(1);
  }
}
"""

# Per-entry body. ``lc`` holds 5 constants per Dense layer (depth + 1 of them):
# weight variance, bias variance, NTK scale and shift of the layer's own
# parameters, and 1/0 for trainable/frozen.
BODY_SOURCE = r"""
const ptrdiff_t row = i / n2;
const ptrdiff_t col = i - row * n2;
const ptrdiff_t nn = n1 * n2;
T sigma = g;
T theta = T(0);
for (int l = 0; l < depth; ++l) {
  const T w2 = lc[5 * l], b2 = lc[5 * l + 1];
  theta = w2 * theta + lc[5 * l + 4] * (lc[5 * l + 2] * sigma + lc[5 * l + 3]);
  sigma = w2 * sigma + b2;
  T dot;
  sknetk_dual<T>(act, &ap[0], sigma, qa[l * n1 + row], qb[l * n2 + col], dot);
  theta = theta * dot;
  if (all_depths || l == depth - 1) {
    const ptrdiff_t k = all_depths ? l : 0;
    const int r = 5 * (l + 1);
    if (want_nngp) nngp[k * nn + i] = lc[r] * sigma + lc[r + 1];
    if (want_ntk)
      ntk[k * nn + i] = lc[r] * theta + lc[r + 4] * (lc[r + 2] * sigma + lc[r + 3]);
  }
}
"""


def fused_activation(spec):
    """``(act_id, params)`` of the fused CUDA form, or ``None`` if there is none."""
    entry = _FUSED.get(spec.activation)
    if entry is None:
        return None
    act_id, to_params = entry
    return act_id, tuple(float(v) for v in to_params(**spec._params))


def layer_constants(spec, n_features):
    """The ``(depth + 1) x 5`` table of Dense-layer constants used by the kernel."""
    rows = []
    for layer in range(spec.depth + 1):
        w2, b2, scale, shift, trainable = spec._dense(layer, n_features)
        rows.append((w2, b2, scale, shift, 1.0 if trainable else 0.0))
    return np.asarray(rows, dtype=np.float64)


_KERNEL_CACHE = {}


def _elementwise_kernel():
    import cupy

    kernel = _KERNEL_CACHE.get("recursion")
    if kernel is None:
        kernel = cupy.ElementwiseKernel(
            "T g, raw T qa, raw T qb, raw T lc, raw T ap, int32 act, int64 n1, "
            "int64 n2, int32 depth, bool all_depths, bool want_nngp, bool want_ntk",
            "raw T nngp, raw T ntk",
            BODY_SOURCE,
            "sknetk_recursion",
            preamble=DUAL_SOURCE,
        )
        _KERNEL_CACHE["recursion"] = kernel
    return kernel


def free_device_memory():
    """Bytes the current CUDA device can still give: driver free + CuPy pool free."""
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    return int(free + pool.free_bytes())


def check_fits(n_bytes, what):
    """Raise ``MemoryError`` before allocating when ``n_bytes`` cannot fit."""
    free = free_device_memory()
    if n_bytes > free:
        raise MemoryError(
            f"{what} needs {n_bytes / 2**30:.2f} GiB of GPU memory but only "
            f"{free / 2**30:.2f} GiB is free. Use fewer rows, dtype='float32', "
            "or the CPU (device='cpu')."
        )


def compute_kernels_cupy(X, Y, spec, want, all_depths, working_memory_bytes):
    """Fill the requested kernels with the fused kernel; CuPy arrays in and out.

    The Gram matrix is produced in row blocks (cuBLAS) into a scratch buffer
    sized to the budget and to free device memory; the fused kernel writes each
    block's kernels straight into the output. Returns a dict of
    ``(n_depths, n1, n2)`` arrays.
    """
    import cupy

    symmetric = Y is None
    Yv = X if symmetric else Y
    fused = fused_activation(spec)
    if fused is None:  # pragma: no cover - every registered activation is fused
        raise NotImplementedError(spec.activation)
    act_id, act_params = fused
    n1, n2, d = X.shape[0], Yv.shape[0], X.shape[1]
    dtype = X.dtype
    itemsize = dtype.itemsize
    n_depths = spec.depth if all_depths else 1
    out_bytes = len(want) * n_depths * n1 * n2 * itemsize
    check_fits(out_bytes, f"The {' and '.join(want)} kernel(s) of {n1} x {n2} rows")
    out = {name: cupy.empty((n_depths, n1, n2), dtype=dtype) for name in want}

    from .kernels import _variance_path

    xp = _cupy_namespace()
    qa = cupy.ascontiguousarray(
        cupy.stack(_variance_path(xp, X, spec)[0]).astype(dtype, copy=False)
    )
    qb = qa if symmetric else cupy.ascontiguousarray(
        cupy.stack(_variance_path(xp, Yv, spec)[0]).astype(dtype, copy=False)
    )
    lc = cupy.asarray(layer_constants(spec, d), dtype=dtype)
    ap = cupy.asarray(act_params, dtype=dtype)

    # Rows per block: the Gram scratch (and, for several depths, one output
    # scratch per kernel) within the budget and a quarter of what is free.
    per_row = n2 * itemsize * (1 + (len(want) * n_depths if all_depths else 0))
    limit = min(working_memory_bytes, free_device_memory() / 4)
    rows = int(max(1, min(n1, limit // max(per_row, 1))))
    check_fits(rows * per_row, "One block of the Gram matrix")
    kernel = _elementwise_kernel()
    scale = dtype.type(1.0 / d)
    dummy = cupy.empty((1,), dtype=dtype)
    for r0 in range(0, n1, rows):
        r1 = min(n1, r0 + rows)
        gram = cupy.matmul(X[r0:r1], Yv.T)
        gram *= scale
        if all_depths:
            targets = {
                name: cupy.empty((n_depths, r1 - r0, n2), dtype=dtype) for name in want
            }
        else:
            targets = {name: out[name][0, r0:r1, :] for name in want}
        # Raw arguments are passed flat (C order), as the body indexes them.
        kernel(
            gram,
            cupy.ascontiguousarray(qa[:, r0:r1]).reshape(-1),
            qb.reshape(-1),
            lc.reshape(-1),
            ap,
            np.int32(act_id),
            np.int64(r1 - r0),
            np.int64(n2),
            np.int32(spec.depth),
            np.bool_(all_depths),
            np.bool_("nngp" in want),
            np.bool_("ntk" in want),
            targets["nngp"].reshape(-1) if "nngp" in targets else dummy,
            targets["ntk"].reshape(-1) if "ntk" in targets else dummy,
        )
        if all_depths:
            for name in want:
                out[name][:, r0:r1, :] = targets[name]
        del gram
    return out


def _cupy_namespace():
    import cupy

    from ._array_api import get_namespace

    return get_namespace(cupy.empty(0))
