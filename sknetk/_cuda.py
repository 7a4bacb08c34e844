"""Fused CUDA kernel for the layer recursion (CuPy), and GPU memory planning.

One CUDA kernel (``cupy.RawModule``) reads the Gram entry ``<x, y> / d`` and
the two rows' per-layer variances and walks all layers in registers, writing the NNGP
and/or NTK (of every depth, when asked): one read and one write per entry
instead of one pass over memory per elementwise operation.

The activations with a fused form are the ABReLU family (relu, leaky_relu,
abs, abrelu), erf and sigmoid_like, gelu, sin and cos, rbf, sign and identity:
every registered activation (tests/test_cuda_source.py checks it). An
activation added to the registry without a fused form here makes the CuPy
path raise ``NotImplementedError`` naming it; there is no generic GPU
fallback. Each activation's constants come from :mod:`sknetk._activations`.

CuPy is imported inside the functions only.
"""

import math
import os

import numpy as np

from ._activations import ACTIVATIONS, SIGMOID_LIKE_ERF, cos2
from ._array_api import get_namespace
from ._recursion import snap_tolerances, variance_path

_PI = math.pi


def _abrelu(a, b):
    """ABReLU-family constants ``(a, b, (a - b)^2 / (2 pi), (a^2 + b^2) / 2)``.

    The last two are what the dual needs; computed once here, so that the
    kernel spends no division per entry on them.
    """
    return (a, b, (a - b) * (a - b) / (2 * _PI), (a * a + b * b) / 2)


# activation name -> (id in the CUDA switch, function of params -> 4 floats);
# the ABReLU family (activations with slopes) is one switch case.
_FUSED = {
    **{
        name: (0, lambda slopes=act.slopes, **params: _abrelu(*slopes(**params)))
        for name, act in ACTIVATIONS.items()
        if act.slopes is not None
    },
    "erf": (1, lambda a, b, c: (a, b, c, 0.0)),
    "sigmoid_like": (1, lambda: (*SIGMOID_LIKE_ERF, 0.0)),
    "gelu": (2, lambda: (0.0, 0.0, 0.0, 0.0)),
    "sin": (3, lambda a, b, c: (a, b, cos2(c), 0.0)),
    "cos": (3, lambda a, b, c: (a, b, cos2(c, shift=True), 0.0)),
    "rbf": (4, lambda gamma: (gamma, 0.0, 0.0, 0.0)),
    "sign": (5, lambda: (0.0, 0.0, 0.0, 0.0)),
    "identity": (6, lambda: (0.0, 0.0, 0.0, 0.0)),
}

# Device functions: the dual and derivative dual of each activation, and the
# whole recursion for one entry. Written as plain C++ templates so that the
# same text also compiles with a host C++ compiler: the CPU test suite builds
# it and checks it against the NumPy path (tests/test_cuda_source.py).
#
# The same mathematics as sknetk/_activations.py: every dual is a function of
# the two standard deviations and the correlation, which is clipped to [-1, 1]
# (the Cauchy-Schwarz bound, at every layer) and snapped to +-1 within the
# layer's tolerance (``lc`` column 5, see _activations.snap_tolerance), so
# that identical rows follow the diagonal's recursion. Gaps such as
# q1 + q2 - 2k are formed from the correlation, without cancellation.
#
# Per row and per layer the host precomputes (q, sqrt(q), 1/sqrt(q)) with
# 1/sqrt(0) := 0, so rho = k / sqrt(q1 q2) becomes k * (i1 * i2), exactly
# symmetric in the two rows, plus the square roots of the row's exact NNGP and
# NTK diagonals (+inf when unknown), which bound the outputs.
DUAL_SOURCE = r"""
// The math functions by precision, named explicitly so that float32 code can
// never be promoted to the double-precision routines.
__device__ __host__ inline float sknetk_sqrt(float x) { return sqrtf(x); }
__device__ __host__ inline double sknetk_sqrt(double x) { return sqrt(x); }
__device__ __host__ inline float sknetk_exp(float x) { return expf(x); }
__device__ __host__ inline double sknetk_exp(double x) { return exp(x); }
__device__ __host__ inline float sknetk_atan2(float y, float x) {
  return atan2f(y, x);
}
__device__ __host__ inline double sknetk_atan2(double y, double x) {
  return atan2(y, x);
}

template <typename T>
__device__ __host__ inline T sknetk_clip1(T x) {
  return x > T(1) ? T(1) : (x < T(-1) ? T(-1) : x);
}

// |v| <= bound (NaN bounds leave v as it is)
template <typename T>
__device__ __host__ inline T sknetk_bound(T v, T bound) {
  return v > bound ? bound : (v < -bound ? -bound : v);
}

// a = (q1, sqrt q1, 1/sqrt q1, ...), b = (q2, sqrt q2, 1/sqrt q2, ...);
// snap = 1 - the layer's snap tolerance
template <typename T>
__device__ __host__ inline void sknetk_dual(int act, const T* ap, T& sigma,
                                            const T* a, const T* b, T snap,
                                            T& dot) {
  const T pi = T(3.14159265358979323846);
  const T s1 = a[1], s2 = b[1];
  const T norm = s1 * s2;
  T rho = sknetk_clip1(sigma * (a[2] * b[2]));
  if (rho > snap) rho = T(1);
  if (rho < -snap) rho = T(-1);
  const T one_m = T(1) - rho, one_p = T(1) + rho;
  const T sin_angle = sknetk_sqrt(one_m * one_p);
  if (act == 0) {  // ABReLU family
    // ap = (a, b, (a - b)^2 / (2 pi), (a^2 + b^2) / 2), from the host
    const T angle = sknetk_atan2(sin_angle, rho);
    const T factor = ap[2];
    dot = ap[3] - factor * angle;
    sigma = norm * (factor * sin_angle + dot * rho);
  } else if (act == 5) {  // sign: (2/pi) arcsin(rho)
    sigma = (T(2) / pi) * sknetk_atan2(rho, sin_angle);
    dot = T(0);
  } else if (act == 1) {  // a * erf(b x) + c
    const T ca = ap[0], bb = ap[1] < T(0) ? -ap[1] : ap[1], c = ap[2];
    const T sc = sknetk_sqrt(T(2)) * bb;
    const T g1 = sc * s1, g2 = sc * s2;
    const T i1 = T(1) / (g1 > T(1) ? g1 : T(1));
    const T i2 = T(1) / (g2 > T(1) ? g2 : T(1));
    const T n1 = g1 * i1, n2 = g2 * i2, n12 = n1 * n2, i12 = i1 * i2;
    const T root = sknetk_sqrt(i12 * i12 + ((n1 * i2) * (n1 * i2)
                                            + (n2 * i1) * (n2 * i1))
                               + n12 * n12 * (one_m * one_p));
    sigma = ca * ca * (T(2) / pi) * sknetk_atan2(n12 * rho, root) + c * c;
    dot = ca * ca * (T(4) / pi) * ((bb * i1) * (bb * i2)) / root;
  } else if (act == 2) {  // gelu
    const T q1 = s1 * s1, q2 = s2 * s2;
    const T e1 = T(1) / (T(1) + q1), e2 = T(1) / (T(1) + q2);
    const T u1 = q1 * e1, u2 = q2 * e2, u12 = u1 * u2, e12 = e1 * e2;
    const T one_minus_u12 = e12 + (e1 * u2 + u1 * e2);
    const T dd = one_minus_u12 + u12 * (one_m * one_p);
    const T d = sknetk_sqrt(dd);
    const T kappa = rho * ((s1 * sknetk_sqrt(e1)) * (s2 * sknetk_sqrt(e2)));
    const T root_p = sknetk_sqrt(T(1) + q1) * sknetk_sqrt(T(1) + q2);
    const T k = rho * norm;
    const T beta = sknetk_atan2(kappa, d);
    sigma = T(0.25) * k
            + (root_p * u12 * d + kappa * kappa / (d * root_p) + k * beta)
                  / (T(2) * pi);
    dot = T(0.25) + beta / (T(2) * pi)
          + (kappa / d) * (one_minus_u12 + e12 * (T(1) + T(1) / dd))
                / (T(2) * pi);
  } else if (act == 3 || act == 4) {  // sin family, rbf: the gaps
    const T diff = (s1 - s2) * (s1 - s2), two_norm = T(2) * norm;
    const T minus = diff + two_norm * one_m;  // q1 + q2 - 2k
    if (act == 4) {  // rbf
      const T gamma = ap[0];
      sigma = sknetk_exp(-gamma * minus);
      dot = T(2) * gamma * sigma;
      return;
    }
    // a * sin(b x + c); ap = (a, b, cos(2c), 0)
    const T ca = ap[0], b2 = ap[1] * ap[1], cos2c = ap[2];
    const T plus = diff + two_norm * one_p;  // q1 + q2 + 2k
    const T e_minus = sknetk_exp(T(-0.5) * b2 * minus);
    const T e_plus = sknetk_exp(T(-0.5) * b2 * plus) * cos2c;
    sigma = ca * ca / T(2) * (e_minus - e_plus);
    dot = ca * ca / T(2) * b2 * (e_minus + e_plus);
  } else {  // identity
    sigma = rho * norm;
    dot = T(1);
  }
}

// The recursion for R entries of one column c: rows r0 .. r0 + nr - 1 of a
// block with ``rows`` rows (nr <= R; the other slots repeat row r0 and are
// not written). The layer loop is outside and the R independent entries
// inside, so that their dependency chains interleave (instruction-level
// parallelism); the column's data are loaded once per layer.
// ``ra``: depth x rows x 5 row data, ``cb``: depth x n2 x 5 column data
// (q, sqrt q, 1/sqrt q, sqrt of the NNGP and NTK diagonals of the network
// that ends after this layer), ``lc``: (depth + 1) x 6 Dense-layer constants
// (weight variance, bias variance, NTK scale and shift of the layer's own
// parameters, 1/0 trained, 1 - snap tolerance of the activation after it).
// ``g``: the R Gram entries, already divided by d.
// Outputs are written at k * out_stride + r * n2 + c for depth slice k.
template <typename T, int R>
__device__ __host__ inline void sknetk_entries(
    const T* g, long long r0, int nr, long long c, long long rows, long long n2,
    const T* ra, const T* cb, const T* lc, const T* ap, int act, int depth,
    int all_depths, int want_nngp, int want_ntk, long long out_stride,
    T* nngp, T* ntk) {
  T sigma[R], theta[R];
  for (int k = 0; k < R; ++k) {
    sigma[k] = g[k];
    theta[k] = T(0);
  }
  for (int l = 0; l < depth; ++l) {
    const T w2 = lc[6 * l], b2 = lc[6 * l + 1], sc = lc[6 * l + 2];
    const T sh = lc[6 * l + 3], tr = lc[6 * l + 4], snap = lc[6 * l + 5];
    const T* bp = cb + 5 * (l * n2 + c);
    const T b[5] = {bp[0], bp[1], bp[2], bp[3], bp[4]};
#ifdef __CUDACC__
#pragma unroll
#endif
    for (int k = 0; k < R; ++k) {
      const long long r = r0 + (k < nr ? k : 0);
      theta[k] = w2 * theta[k] + tr * (sc * sigma[k] + sh);
      sigma[k] = w2 * sigma[k] + b2;
      T dot;
      sknetk_dual<T>(act, ap, sigma[k], ra + 5 * (l * rows + r), b, snap, dot);
      theta[k] = theta[k] * dot;
    }
    if (all_depths || l == depth - 1) {
      const long long kd = all_depths ? l : 0;
      const int q = 6 * (l + 1);
      for (int k = 0; k < nr; ++k) {
        const long long e = kd * out_stride + (r0 + k) * n2 + c;
        const T* ar = ra + 5 * (l * rows + r0 + k);
        // the Cauchy-Schwarz bound |K(x, y)| <= sqrt(K(x, x) K(y, y))
        if (want_nngp)
          nngp[e] = sknetk_bound(lc[q] * sigma[k] + lc[q + 1], ar[3] * b[3]);
        if (want_ntk)
          ntk[e] = sknetk_bound(
              lc[q] * theta[k] + lc[q + 4] * (lc[q + 2] * sigma[k] + lc[q + 3]),
              ar[4] * b[4]);
      }
    }
  }
}

// One entry (row r, column c): R = 1.
template <typename T>
__device__ __host__ inline void sknetk_entry(
    T sigma, long long r, long long c, long long rows, long long n2,
    const T* ra, const T* cb, const T* lc, const T* ap, int act, int depth,
    int all_depths, int want_nngp, int want_ntk, long long out_stride,
    T* nngp, T* ntk) {
  sknetk_entries<T, 1>(&sigma, r, 1, c, rows, n2, ra, cb, lc, ap, act, depth,
                       all_depths, want_nngp, want_ntk, out_stride, nngp, ntk);
}
"""

# One thread per column and ROWS rows at a time, strided over the
# grid's y dimension: no integer division per entry. One kernel per (dtype,
# activation): the activation id is a compile-time constant, so only its
# branch is compiled (fewer registers,
# higher occupancy). The Gram scale 1/d is applied as the entry is loaded,
# saving a pass over the block.
_KERNEL_TEMPLATE = r"""
#define SKNETK_KERNEL(T, A, ROWS)                                              \
  extern "C" __global__ void sknetk_recursion_##T##_##A(                       \
      const T* __restrict__ gram, T scale, const T* __restrict__ ra,           \
      const T* __restrict__ cb, const T* __restrict__ lc,                      \
      const T* __restrict__ ap, long long rows, long long n2, int depth,       \
      int all_depths, int want_nngp, int want_ntk, long long out_stride,       \
      T* nngp, T* ntk) {                                                       \
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;      \
    if (c >= n2) return;                                                       \
    for (long long r0 = (long long)blockIdx.y * ROWS; r0 < rows;               \
         r0 += (long long)gridDim.y * ROWS) {                                  \
      const int nr = rows - r0 < ROWS ? (int)(rows - r0) : ROWS;               \
      T g[ROWS];                                                               \
      for (int k = 0; k < ROWS; ++k)                                           \
        g[k] = gram[(r0 + (k < nr ? k : 0)) * n2 + c] * scale;                 \
      sknetk_entries<T, ROWS>(g, r0, nr, c, rows, n2, ra, cb, lc, ap, A,       \
                              depth, all_depths, want_nngp, want_ntk,          \
                              out_stride, nngp, ntk);                          \
    }                                                                          \
  }
#define SKNETK_KERNELS(A) SKNETK_KERNEL(double, A, %(rows64)d) \
                          SKNETK_KERNEL(float, A, %(rows32)d)
SKNETK_KERNELS(0)
SKNETK_KERNELS(1)
SKNETK_KERNELS(2)
SKNETK_KERNELS(3)
SKNETK_KERNELS(4)
SKNETK_KERNELS(5)
SKNETK_KERNELS(6)
"""

_THREADS = 256
_MAX_GRID_Y = 65535
#: Rows per thread by dtype: 4 in float32 (measured faster on an H200), 1 in
#: float64 (four double-precision chains cost occupancy and were slower there).
_DEFAULT_ROWS_PER_THREAD = {"float64": 1, "float32": 4}
#: Developer knob for tuning on a new GPU, e.g. ``"float64=2,float32=4"``;
#: read at each launch, one compiled module per setting.
ROWS_ENV = "SKNETK_CUDA_ROWS_PER_THREAD"
_MAX_ROWS_PER_THREAD = 8


def rows_per_thread():
    """``{"float64": r64, "float32": r32}``: rows each CUDA thread computes.

    The defaults, overridden by the environment variable named by
    :data:`ROWS_ENV` (``"float64=2"``, ``"float32=2,float64=2"``; each value an
    integer in 1..8). A benchmark sets it to compare configurations on the
    device at hand; users have no reason to.
    """
    rows = dict(_DEFAULT_ROWS_PER_THREAD)
    text = os.environ.get(ROWS_ENV, "").strip()
    if not text:
        return rows
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if (
            not sep
            or key not in rows
            or not value.isdigit()
            or not (1 <= int(value) <= _MAX_ROWS_PER_THREAD)
        ):
            raise ValueError(
                f"{ROWS_ENV}={text!r}: expected comma-separated float64=<r> "
                f"and/or float32=<r> with r in 1..{_MAX_ROWS_PER_THREAD}."
            )
        rows[key] = int(value)
    return rows


def kernel_source(rows=None):
    """CUDA source of the 14 fused kernels (7 activations x 2 dtypes).

    ``rows`` maps ``"float64"`` and ``"float32"`` to rows per thread (default:
    :func:`rows_per_thread`).
    """
    rows = rows_per_thread() if rows is None else rows
    return DUAL_SOURCE + _KERNEL_TEMPLATE % {
        "rows64": int(rows["float64"]),
        "rows32": int(rows["float32"]),
    }


#: The source with the default rows per thread (what the tests compile).
KERNEL_SOURCE = kernel_source(_DEFAULT_ROWS_PER_THREAD)


def fused_activation(spec):
    """``(act_id, params)`` of the fused CUDA form, or ``None`` if there is none."""
    entry = _FUSED.get(spec.activation)
    if entry is None:
        return None
    act_id, to_params = entry
    return act_id, tuple(float(v) for v in to_params(**spec._params))


def layer_constants(spec, n_features, dtype=np.float64):
    """The ``(depth + 1) x 6`` table of Dense-layer constants used by the kernel.

    The last column is ``1 - tol``, with ``tol`` the snap tolerance of the
    correlation entering the activation after the layer in ``dtype`` (see
    :func:`sknetk._activations.snap_tolerance`; it grows with
    ``n_features`` for the first layer, fed by the Gram product).
    """
    tols = snap_tolerances(np, spec, np.dtype(dtype), n_features)
    rows = []
    for layer in range(spec.depth + 1):
        w2, b2, scale, shift, trainable = spec._dense(layer, n_features)
        tol = tols[min(layer, len(tols) - 1)]
        rows.append((w2, b2, scale, shift, 1.0 if trainable else 0.0, 1.0 - tol))
    return np.asarray(rows, dtype=np.float64)


_KERNEL_CACHE = {}


def _raw_kernel(dtype, act_id, rows):
    """The compiled kernel for ``dtype`` and activation ``act_id``, with the
    rows per thread of ``rows`` (one RawModule per distinct ``rows``)."""
    import cupy

    key = (rows["float64"], rows["float32"])
    name = "sknetk_recursion_{}_{}".format(
        "float" if dtype == np.float32 else "double", int(act_id)
    )
    kernel = _KERNEL_CACHE.get((key, name))
    if kernel is None:
        module = _KERNEL_CACHE.get((key, "module"))
        if module is None:
            module = cupy.RawModule(code=kernel_source(rows), options=("-std=c++14",))
            _KERNEL_CACHE[(key, "module")] = module
        kernel = module.get_function(name)
        _KERNEL_CACHE[(key, name)] = kernel
    return kernel


def row_data(xp, q_pre, roots=None):
    """``depth x n x 5`` array of per-layer, per-row data for the kernel.

    ``(q, sqrt(q), 1/sqrt(q), r_nngp, r_ntk)``: ``1/sqrt(0)`` is taken as 0,
    so that zero rows get correlation 0 (angle pi/2), as in the NumPy path;
    ``roots`` is ``None`` or two lists (NNGP, NTK) of ``depth`` arrays (or
    ``None`` entries): the square roots of the row's exact diagonals of the
    network ending after each layer, which bound the outputs; missing ones
    are +inf (no bound).
    """
    q = xp.stack(q_pre)
    s = xp.sqrt(q)
    positive = s > 0
    inv = xp.where(
        positive, 1.0 / xp.where(positive, s, xp.ones_like(s)), xp.zeros_like(s)
    )
    columns = [q, s, inv]
    for which in range(2):
        per_layer = [None] * len(q_pre) if roots is None else roots[which]
        columns.append(
            xp.stack(
                [
                    xp.full_like(s[0], math.inf) if r is None else xp.astype(r, s.dtype)
                    for r in per_layer
                ]
            )
        )
    return xp.stack(columns, axis=-1)


def _per_layer_roots(roots, depth, all_depths):
    """``(nngp, ntk)`` lists of ``depth`` root arrays (or ``None``) from the
    per-collected-depth dict ``{"nngp": [...], "ntk": [...]}``."""
    out = []
    for name in ("nngp", "ntk"):
        values = (roots or {}).get(name)
        per_layer = [None] * depth
        if values is not None:
            if all_depths:
                per_layer = list(values)
            else:
                per_layer[depth - 1] = values[0]
        out.append(per_layer)
    return out


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


def compute_kernels_cupy(
    X, Y, spec, want, all_depths, working_memory_bytes, roots=None
):
    """Fill the requested kernels with the fused kernel; CuPy arrays in and out.

    The Gram matrix is produced in row blocks (cuBLAS) into a scratch buffer
    sized to the budget and to free device memory; the fused kernel writes each
    block's kernels straight into the output. ``roots`` is ``None`` or the
    pair (rows, columns) of dicts of the square roots of the exact diagonals
    (see ``kernels._compute_kernels``), which bound every entry. Returns a
    dict of ``(n_depths, n1, n2)`` arrays.
    """
    import cupy

    symmetric = Y is None
    Yv = X if symmetric else Y
    fused = fused_activation(spec)
    if fused is None:  # pragma: no cover - every registered activation is fused
        raise NotImplementedError(
            f"activation {spec.activation!r} has no fused CUDA form"
        )
    act_id, act_params = fused
    n1, n2, d = X.shape[0], Yv.shape[0], X.shape[1]
    dtype = X.dtype
    itemsize = dtype.itemsize
    n_depths = spec.depth if all_depths else 1
    out_bytes = len(want) * n_depths * n1 * n2 * itemsize
    check_fits(out_bytes, f"The {' and '.join(want)} kernel(s) of {n1} x {n2} rows")
    out = {name: cupy.empty((n_depths, n1, n2), dtype=dtype) for name in want}

    xp = _cupy_namespace()
    roots_x, roots_y = (None, None) if roots is None else roots
    path_x = variance_path(xp, X, spec)[0]
    ra_all = cupy.ascontiguousarray(
        row_data(xp, path_x, _per_layer_roots(roots_x, spec.depth, all_depths)).astype(
            dtype, copy=False
        )
    )
    cb = (
        ra_all
        if symmetric
        else cupy.ascontiguousarray(
            row_data(
                xp,
                variance_path(xp, Yv, spec)[0],
                _per_layer_roots(roots_y, spec.depth, all_depths),
            ).astype(dtype, copy=False)
        )
    )
    # squared norms, undivided: the kernel scales every Gram entry by 1/d
    sq = xp.sum(X * X, axis=1) if symmetric else None
    lc = cupy.asarray(layer_constants(spec, d, dtype), dtype=dtype).reshape(-1)
    ap = cupy.asarray(act_params, dtype=dtype)

    # Rows per block: the Gram scratch (and, for several depths, one output
    # scratch per kernel) within the budget and a quarter of what is free.
    per_row = n2 * itemsize * (1 + (len(want) * n_depths if all_depths else 0))
    limit = min(working_memory_bytes, free_device_memory() / 4)
    rows = int(max(1, min(n1, limit // max(per_row, 1))))
    check_fits(rows * per_row, "One block of the Gram matrix")
    rows_cfg = rows_per_thread()
    kernel = _raw_kernel(dtype, act_id, rows_cfg)
    scale = dtype.type(1.0 / d)
    dummy = cupy.empty((1,), dtype=dtype)
    for r0 in range(0, n1, rows):
        r1 = min(n1, r0 + rows)
        m = r1 - r0
        gram = cupy.matmul(X[r0:r1], Yv.T)
        if symmetric:
            # the diagonal is <x, x> as in the variance path, so that diagonal
            # entries follow the exact correlation-one recursion
            idx = cupy.arange(m)
            gram[idx, idx + r0] = sq[r0:r1]
        if all_depths:
            targets = {
                name: cupy.empty((n_depths, m, n2), dtype=dtype) for name in want
            }
            stride = m * n2
        else:
            targets = {name: out[name][0, r0:r1, :] for name in want}
            stride = 0
        ra = cupy.ascontiguousarray(ra_all[:, r0:r1, :])
        per_thread = rows_cfg[np.dtype(dtype).name]
        grid = (
            (n2 + _THREADS - 1) // _THREADS,
            min((m + per_thread - 1) // per_thread, _MAX_GRID_Y),
            1,
        )
        kernel(
            grid,
            (_THREADS, 1, 1),
            (
                gram,
                scale,
                ra,
                cb,
                lc,
                ap,
                np.int64(m),
                np.int64(n2),
                np.int32(spec.depth),
                np.int32(all_depths),
                np.int32("nngp" in want),
                np.int32("ntk" in want),
                np.int64(stride),
                targets.get("nngp", dummy),
                targets.get("ntk", dummy),
            ),
        )
        if all_depths:
            for name in want:
                out[name][:, r0:r1, :] = targets[name]
        del gram
    return out


def _cupy_namespace():
    import cupy

    return get_namespace(cupy.empty(0))
