"""Fused CUDA kernels for the convolutional (CNN-GP / CNTK) layer recursion.

Two kinds of kernels, both for tiles of image pairs:

* **Offset slices (no pooling).** The Conv shifts both pixels
  of a pair by the same offset and the activation acts entry by entry, so
  the entries ``K(p, p + d)`` of one offset ``d`` never mix with another
  offset's through the whole network. One CUDA block runs *every* layer of
  one image pair on one offset slice (at most ``H W`` entries per array) in
  shared memory: the first Conv's input covariances straight from the
  images, then per layer the patch sums, the affine step of the
  parameterization, the activation's dual and derivative dual, and the
  readout's float64 partial sums (a tree sum over the block's threads): over
  every offset slice for GAP, over the zero offset alone (the diagonal pixel
  pairs, one slice per image pair) for Flatten. Only those sums leave the
  chip: the O(P^2) work per image pair runs without
  O(P^2) traffic to device memory. Used while ``4 H W`` values and the
  block's sums fit 48 KiB of shared memory (float32: up to about 54x54
  images, float64: 38x38).
* **Layer by layer** (pooling, larger maps, and every per-image
  recursion): one launch per block of the network computes, for every image
  pair of the tile and every pixel pair of the block's output map, the same
  fused step from the previous layer's values in device memory, and the
  readout's partial sums when the block is read out.

The per-image recursions (the pixel variances ``q(x, p)`` every pair needs,
and the exact diagonals ``K(x, x)``) run layer by layer on self tiles, with a
small variance kernel before each layer.

Layout (layer by layer). A tile of ``T`` image pairs (``T`` a multiple of
32) is stored as ``(T / 32, E, 32)``: groups of 32 pairs, pixel-pair entry
``e`` major inside a group, the 32 pairs minor. ``E`` is ``(H W)^2`` in the full layout
(``e = ((h W + w) H + h') W + w'``) or ``H W`` in the diagonal one (Flatten
readout, no pooling left: only the pairs ``(p, p)``). A warp handles one
entry of 32 pairs (coalesced), a thread keeps its pair and walks the entries
of its group with a stride (its *lane*), so that its readout sum stays in a
register and is written once (no atomics: deterministic).

Precision. The storage type ``T`` is float32 or float64; patch sums, the
input dot products and the readout are accumulated in float64 in both (the
issue's "float32 kernels with float64 accumulation of the readout"); the
activation's dual runs in ``T``.

Activations. The duals are :mod:`sknetk._cuda`'s device functions (the ABReLU
family in the arccos form ``atan2(sin, rho)``, erf and sigmoid_like, gelu,
sin and cos, rbf, sign, identity): every registered activation is fused.
AvgPool between blocks, the switch from the full to the diagonal layout and
the readout of a pooled block run as array operations on the device (CuPy),
with float64 sums.

Developer knobs (environment variables, read at each call, for tuning on a
new device with ``benchmarks/bench_conv_gpu.py --sweep``):
:data:`THREADS_ENV` (threads per layer launch), :data:`PAIRS_ENV` (image pairs
per layer-by-layer tile), :data:`MIN_BLOCKS_ENV` (``__launch_bounds__`` of
the layer kernels) and :data:`SLICES_ENV` (``0``: no slice kernel).

The device code is plain C++ templates, so tests/test_conv_cuda_source.py
compiles it for the host with g++ and runs the driver below on NumPy arrays
through ctypes (emulated launches; the slice kernel's blocks also with real
threads and a barrier): the GPU is not needed to check the arithmetic. It
has not been timed on a GPU in this file's first version.
CuPy is imported inside the functions only.
"""

import math
import os

import numpy as np

from . import _cuda
from ._activations import snap_tolerance

__all__ = [
    "CONV_SOURCE",
    "conv_diagonals",
    "conv_diagonals_cupy",
    "conv_kernels",
    "conv_kernels_cupy",
    "kernel_names",
    "kernel_source",
    "min_blocks_per_sm",
    "threads_per_launch",
]

#: Pairs per group (one warp) and threads per CUDA block.
GROUP = 32
_BLOCK = 256

# geometry of one block (long long array ``geo``):
_GEO_FIELDS = (
    "Hi",  # 0 input map
    "Wi",  # 1
    "Ho",  # 2 output map of the Conv
    "Wo",  # 3
    "fh",  # 4 filter
    "fw",  # 5
    "lo_h",  # 6 offset of the window's first row (SAME/CIRCULAR), 0 (VALID)
    "lo_w",  # 7
    "padding",  # 8 0 zeros, 1 periodic, 2 none
    "full",  # 9 full (1) or diagonal (0) pixel-pair layout
    "first",  # 10 the input is the images (first Conv)
    "C",  # 11 channels of the images
    "want_ntk",  # 12
    "has_theta",  # 13 an NTK input exists (not the first Conv)
    "ntk_par",  # 14 "ntk" (1) or "standard" (0) parameterization
    "readout",  # 15 0 none, 1 every entry, 2 the diagonal pixel pairs
    "lda",  # 16 leading dimension of the rows' pixel maps (their image count)
    "ldb",  # 17 same for the columns
    "moff_a",  # 18 offset of the block's rows' maps (slice kernel)
    "moff_b",  # 19 same for the columns
    "slice0",  # 20 index of the first offset slice (Flatten: the zero offset)
)
_GEO = {name: k for k, name in enumerate(_GEO_FIELDS)}

CONV_SOURCE = (
    _cuda.DUAL_SOURCE
    + r"""
#define SKNETK_CONV_NGEO 21
// ---------------------------------------------------------------------------
// Convolutional layer recursion. ``geo``: see _GEO_FIELDS in _conv_cuda.py;
// ``cst`` (double): w^2 / (fh fw), b^2, c_in (the standard NTK's patch
// factor), 1[bias], 1 - the snap tolerance of the block's correlations.
// ---------------------------------------------------------------------------

// The geometry of a launch, read once per thread (see _GEO_FIELDS); pixel
// indices are 32-bit (maps up to 46340 pixels), memory offsets 64-bit.
struct sknetk_conv_geo {
  int Hi, Wi, Ho, Wo, fh, fw, lo_h, lo_w, padding, full, first, C;
  int want_ntk, has_theta, ntk_par, readout;
  long long lda, ldb;
};

__device__ __host__ inline sknetk_conv_geo sknetk_conv_load(
    const long long* geo) {
  sknetk_conv_geo g;
  g.Hi = (int)geo[0];
  g.Wi = (int)geo[1];
  g.Ho = (int)geo[2];
  g.Wo = (int)geo[3];
  g.fh = (int)geo[4];
  g.fw = (int)geo[5];
  g.lo_h = (int)geo[6];
  g.lo_w = (int)geo[7];
  g.padding = (int)geo[8];
  g.full = (int)geo[9];
  g.first = (int)geo[10];
  g.C = (int)geo[11];
  g.want_ntk = (int)geo[12];
  g.has_theta = (int)geo[13];
  g.ntk_par = (int)geo[14];
  g.readout = (int)geo[15];
  g.lda = geo[16];
  g.ldb = geo[17];
  return g;
}

// The source index of output index ``y`` shifted into a map of ``n`` rows
// (false: in the zero padding).
__device__ __host__ inline bool sknetk_conv_src(int y, int n, int padding,
                                                int& out) {
  if (padding == 1) {
    y %= n;
    if (y < 0) y += n;
  }
  out = y;
  return y >= 0 && y < n;
}

// Unnormalised patch sums of Sigma (ps) and Theta (pt) at the output pixel
// pair (h, w; h2, w2) of the pair whose values start at ``sg``/``tg`` (entry
// e at sg[STRIDE e]: 32 in a tile, 1 in an offset slice; ``full``: the full
// or the diagonal pixel-pair index), or of images ``u0``/``v0`` (first Conv):
// one shared offset for both pixels, fh fw offsets, float64 sums.
template <typename T, int STRIDE>
__device__ __host__ inline void sknetk_conv_patch(
    const sknetk_conv_geo& G, int full, const T* sg, const T* tg,
    const T* u0, const T* v0, int h, int w, int h2, int w2, int want_theta,
    double& ps, double& pt) {
  ps = 0.0;
  pt = 0.0;
  for (int a = 0; a < G.fh; ++a) {
    int y1, y2;
    if (!sknetk_conv_src(h + a - G.lo_h, G.Hi, G.padding, y1)) continue;
    if (!sknetk_conv_src(h2 + a - G.lo_h, G.Hi, G.padding, y2)) continue;
    for (int b = 0; b < G.fw; ++b) {
      int x1, x2;
      if (!sknetk_conv_src(w + b - G.lo_w, G.Wi, G.padding, x1)) continue;
      if (!sknetk_conv_src(w2 + b - G.lo_w, G.Wi, G.padding, x2)) continue;
      if (G.first) {
        const T* u = u0 + (long long)(y1 * G.Wi + x1) * G.C;
        const T* v = v0 + (long long)(y2 * G.Wi + x2) * G.C;
        double dot = 0.0;
        for (int c = 0; c < G.C; ++c) dot += (double)u[c] * (double)v[c];
        ps += dot / (double)G.C;
      } else {
        const long long e =
            full ? (long long)(y1 * G.Wi + x1) * (G.Hi * G.Wi) + y2 * G.Wi + x2
                 : (long long)(y1 * G.Wi + x1);
        ps += (double)sg[e * STRIDE];
        if (want_theta) pt += (double)tg[e * STRIDE];
      }
    }
  }
}

// The variances q(x, p) entering the block's activation, of the images of a
// self tile (pairs (i, i)): S[p lda + i] = sqrt(q), INV[...] = 1 / sqrt(q)
// (0 where q = 0). Thread g: slot g % 32, pixel (g / 32) % P, group g / 32P.
template <typename T>
__device__ __host__ inline void sknetk_conv_variance_body(
    long long g, const long long* geo, const double* cst, const T* sig,
    const T* A, const long long* pair_i, T* S, T* INV, long long groups) {
  const sknetk_conv_geo G = sknetk_conv_load(geo);
  const long long P = (long long)G.Ho * G.Wo;
  const long long tt = g & 31, rest = g >> 5;
  const long long p = rest % P, grp = rest / P;
  if (grp >= groups) return;
  const long long i = pair_i[grp * 32 + tt];
  const int h = (int)(p / G.Wo), w = (int)(p % G.Wo);
  const long long Ein = G.full ? (long long)G.Hi * G.Wi * G.Hi * G.Wi
                               : (long long)G.Hi * G.Wi;
  const T* sg = sig + grp * Ein * 32 + tt;
  const T* img = A + i * G.Hi * G.Wi * G.C;
  double ps, pt;
  sknetk_conv_patch<T, 32>(G, G.full, sg, sg, img, img, h, w, h, w, 0, ps,
                            pt);
  const T q = (T)(cst[0] * ps + cst[1]);
  const T s = sknetk_sqrt(q);
  S[p * G.lda + i] = s;
  INV[p * G.lda + i] = s > T(0) ? T(1) / s : T(0);
}

// One block of the recursion on a tile: Conv, affine step, activation,
// readout partial sums. Thread g: slot tt = g % 32, lane (g / 32) % lanes,
// group g / (32 lanes); the lane walks the entries e = lane, lane + lanes, ...
template <typename T, int ACT>
__device__ __host__ inline void sknetk_conv_layer_body(
    long long g, const long long* geo, const double* cst, const T* ap,
    const T* sig, const T* th, const T* A, const T* B,
    const long long* pair_i, const long long* pair_j, const T* sa,
    const T* ia, const T* sb, const T* ib, T* sig_out, T* th_out,
    double* part_s, double* part_t, long long groups, long long lanes) {
  const sknetk_conv_geo G = sknetk_conv_load(geo);
  const long long tt = g & 31, rest = g >> 5;
  const long long lane = rest % lanes, grp = rest / lanes;
  if (grp >= groups) return;
  const long long t = grp * 32 + tt;
  const long long i = pair_i[t], j = pair_j[t];
  const int P = G.Ho * G.Wo;
  const long long Eout = G.full ? (long long)P * P : (long long)P;
  const long long Ein = G.full ? (long long)G.Hi * G.Wi * G.Hi * G.Wi
                               : (long long)G.Hi * G.Wi;
  const double w2f = cst[0], b2 = cst[1], c_in = cst[2], bias_one = cst[3];
  const T snap = (T)cst[4];
  T ap_local[4] = {ap[0], ap[1], ap[2], ap[3]};
  const T* sg = sig + grp * Ein * 32 + tt;
  const T* tg = th + grp * Ein * 32 + tt;
  const T* u0 = A + i * G.Hi * G.Wi * G.C;
  const T* v0 = B + j * G.Hi * G.Wi * G.C;
  T* so = sig_out + grp * Eout * 32 + tt;
  T* to = th_out + grp * Eout * 32 + tt;
  const int want_theta = G.want_ntk && G.has_theta;
  double acc_s = 0.0, acc_t = 0.0;
  for (long long e = lane; e < Eout; e += lanes) {
    int p1, p2;
    if (G.full) {
      p1 = (int)(e / P);
      p2 = (int)(e - (long long)p1 * P);
    } else {
      p1 = p2 = (int)e;
    }
    const int h = p1 / G.Wo, w = p1 - h * G.Wo;
    const int h2 = p2 / G.Wo, w2 = p2 - h2 * G.Wo;
    double ps, pt;
    sknetk_conv_patch<T, 32>(G, G.full, sg, tg, u0, v0, h, w, h2, w2,
                             want_theta, ps, pt);
    const double sigma = w2f * ps + b2;
    double theta = 0.0;
    if (G.want_ntk) {
      const double own = G.ntk_par ? sigma : c_in * ps + bias_one;
      theta = G.has_theta ? w2f * pt + own : own;
    }
    const T a[3] = {T(0), sa[p1 * G.lda + i], ia[p1 * G.lda + i]};
    const T b[3] = {T(0), sb[p2 * G.ldb + j], ib[p2 * G.ldb + j]};
    T sv = (T)sigma, dot;
    sknetk_dual<T>(ACT, ap_local, sv, a, b, snap, dot);
    const T tv = (T)theta * dot;
    so[e * 32] = sv;
    if (G.want_ntk) to[e * 32] = tv;
    if (G.readout == 1 || (G.readout == 2 && p1 == p2)) {
      acc_s += (double)sv;
      acc_t += (double)tv;
    }
  }
  if (G.readout) {
    const long long k = (grp * lanes + lane) * 32 + tt;
    part_s[k] = acc_s;
    part_t[k] = acc_t;
  }
}

// ---------------------------------------------------------------------------
// All blocks at once on one "offset slice" (GAP readout, no pooling). The
// Conv shifts both pixels by the same offset, and the activation acts entry
// by entry, so the entries K(p, p + d) of one offset d = (dh, dw) never mix
// with another offset's: a CUDA block runs the whole recursion of one image
// pair on one slice (at most P entries per array) in shared memory, and only
// the readout sums leave the chip. The per-image variances come from the
// self path. Threads stride over the map's pixels; __syncthreads() separates
// the layers (the host tests run one thread per block, where it is a no-op).
// ---------------------------------------------------------------------------
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SKNETK_SYNC() __syncthreads()
#elif !defined(SKNETK_SYNC)  // host: one thread per block, or the harness's barrier
#define SKNETK_SYNC()
#endif

// index of ``y`` in a map of ``n`` rows under the padding (wrapped when
// periodic)
__device__ __host__ inline void sknetk_conv_at(int y, int n, int padding,
                                               int& out) {
  sknetk_conv_src(y, n, padding, out);
}

template <typename T, int ACT>
__device__ __host__ inline void sknetk_conv_slices_body(
    long long blk, int tid, int nth, double* red, T* buf,
    const long long* geo_all, const double* cst_all, const T* ap, const T* A,
    const T* B, const long long* pair_i, const long long* pair_j,
    const T* maps_a, const T* maps_b, double* part_s, double* part_t,
    long long n_slices, long long depth, long long n_col, long long pmax) {
  const long long t = blk / n_slices;
  const long long s = blk - t * n_slices + geo_all[20];
  const long long i = pair_i[t], j = pair_j[t];
  const sknetk_conv_geo G0 = sknetk_conv_load(geo_all);
  int dh, dw;
  if (G0.padding == 1) {
    dh = (int)(s / G0.Wi);
    dw = (int)(s - (long long)dh * G0.Wi);
  } else {
    const int span = 2 * G0.Wi - 1;
    dh = (int)(s / span) - (G0.Hi - 1);
    dw = (int)(s % span) - (G0.Wi - 1);
  }
  T* cur_s = buf;
  T* cur_t = buf + pmax;
  T* nxt_s = buf + 2 * pmax;
  T* nxt_t = buf + 3 * pmax;
  const T ap_local[4] = {ap[0], ap[1], ap[2], ap[3]};
  const T* u0 = A + i * G0.Hi * G0.Wi * G0.C;
  const T* v0 = B + j * G0.Hi * G0.Wi * G0.C;
  long long kcol = 0;
  for (long long l = 0; l < depth; ++l) {
    const sknetk_conv_geo G = sknetk_conv_load(geo_all + l * SKNETK_CONV_NGEO);
    const long long moff_a = geo_all[l * SKNETK_CONV_NGEO + 18];
    const long long moff_b = geo_all[l * SKNETK_CONV_NGEO + 19];
    const double* cst = cst_all + 5 * l;
    const double w2f = cst[0], b2 = cst[1], c_in = cst[2], bias_one = cst[3];
    const T snap = (T)cst[4];
    const int P = G.Ho * G.Wo;
    const T* Sa = maps_a + moff_a;
    const T* Ia = Sa + (long long)P * G.lda;
    const T* Sb = maps_b + moff_b;
    const T* Ib = Sb + (long long)P * G.ldb;
    // the pixels p of the slice: p and p + d both in the map (every pixel
    // with periodic padding), a rectangle h0 <= h < h0 + nh, w0 <= w < w0 + nw
    int h0 = 0, w0 = 0, nh = G.Ho, nw = G.Wo;
    if (G.padding != 1) {
      h0 = dh < 0 ? -dh : 0;
      w0 = dw < 0 ? -dw : 0;
      nh = G.Ho - (dh < 0 ? -dh : dh);
      nw = G.Wo - (dw < 0 ? -dw : dw);
    }
    const int n_here = nh > 0 && nw > 0 ? nh * nw : 0;
    double acc_s = 0.0, acc_t = 0.0;
    for (int r = tid; r < n_here; r += nth) {
      const int h = h0 + r / nw, w = w0 + (r - (r / nw) * nw);
      const int k = h * G.Wo + w;
      int h2, w2;
      sknetk_conv_at(h + dh, G.Ho, G.padding, h2);
      sknetk_conv_at(w + dw, G.Wo, G.padding, w2);
      // the slice's previous layer: entry K(q, q + d) at cur_s[q]
      double ps, pt;
      sknetk_conv_patch<T, 1>(G, 0, cur_s, cur_t, u0, v0, h, w, h2, w2,
                              G.want_ntk, ps, pt);
      const double sigma = w2f * ps + b2;
      double theta = 0.0;
      if (G.want_ntk) {
        const double own = G.ntk_par ? sigma : c_in * ps + bias_one;
        theta = G.has_theta ? w2f * pt + own : own;
      }
      const int p2 = h2 * G.Wo + w2;
      // maps image-major here: neighbouring threads read neighbouring pixels
      const T av[3] = {T(0), Sa[i * P + k], Ia[i * P + k]};
      const T bv[3] = {T(0), Sb[j * P + p2], Ib[j * P + p2]};
      T sv = (T)sigma, dot;
      sknetk_dual<T>(ACT, ap_local, sv, av, bv, snap, dot);
      const T tv = (T)theta * dot;
      nxt_s[k] = sv;
      nxt_t[k] = tv;
      acc_s += (double)sv;
      acc_t += (double)tv;
    }
    if (G.readout) {  // tree sum over the block's threads (nth a power of 2)
      red[tid] = acc_s;
      red[nth + tid] = acc_t;
      SKNETK_SYNC();
      for (int half = nth / 2; half > 0; half /= 2) {
        if (tid < half) {
          red[tid] += red[tid + half];
          red[nth + tid] += red[nth + tid + half];
        }
        SKNETK_SYNC();
      }
      if (tid == 0) {
        part_s[blk * n_col + kcol] = red[0];
        part_t[blk * n_col + kcol] = red[nth];
      }
      ++kcol;
    }
    SKNETK_SYNC();
    T* tmp = cur_s;
    cur_s = nxt_s;
    nxt_s = tmp;
    tmp = cur_t;
    cur_t = nxt_t;
    nxt_t = tmp;
  }
}
"""
)

# The __global__ kernels: one layer kernel per (dtype, activation id), the
# activation a compile-time constant (only its branch is compiled), and one
# variance kernel per dtype.
_KERNEL_TEMPLATE = r"""
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SKNETK_SHARED_DECL extern __shared__ double sknetk_smem[];
#else  // host emulation: one thread per block, a static buffer
static double sknetk_smem[1 << 20];
#define SKNETK_SHARED_DECL
#endif
#define SKNETK_CONV_LAYER(T, ACT)                                              \
  extern "C" __global__ void SKNETK_CONV_BOUNDS sknetk_conv_layer_##T##_##ACT( \
      const long long* geo, const double* cst, const T* ap, const T* sig,      \
      const T* th, const T* A, const T* B, const long long* pair_i,            \
      const long long* pair_j, const T* sa, const T* ia, const T* sb,          \
      const T* ib, T* sig_out, T* th_out, double* part_s, double* part_t,      \
      long long groups, long long lanes) {                                     \
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;      \
    sknetk_conv_layer_body<T, ACT>(g, geo, cst, ap, sig, th, A, B, pair_i,     \
                                   pair_j, sa, ia, sb, ib, sig_out, th_out,    \
                                   part_s, part_t, groups, lanes);             \
  }
#define SKNETK_CONV_VARIANCE(T)                                                \
  extern "C" __global__ void sknetk_conv_variance_##T(                         \
      const long long* geo, const double* cst, const T* sig, const T* A,       \
      const long long* pair_i, T* S, T* INV, long long groups) {               \
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;      \
    sknetk_conv_variance_body<T>(g, geo, cst, sig, A, pair_i, S, INV, groups); \
  }
#define SKNETK_CONV_SLICES(T, ACT)                                             \
  extern "C" __global__ void SKNETK_CONV_SLICE_BOUNDS                         \
      sknetk_conv_slices_##T##_##ACT(                   \
      const long long* geo_all, const double* cst_all, const T* ap,            \
      const T* A, const T* B, const long long* pair_i,                         \
      const long long* pair_j, const T* maps_a, const T* maps_b,               \
      double* part_s, double* part_t, long long n_slices, long long depth,     \
      long long n_col, long long pmax) {                                       \
    SKNETK_SHARED_DECL                                                         \
    sknetk_conv_slices_body<T, ACT>(                                           \
        (long long)blockIdx.x + (long long)gridDim.x * blockIdx.y,             \
        (int)threadIdx.x, (int)blockDim.x, sknetk_smem,                        \
        (T*)(sknetk_smem + 2 * blockDim.x), geo_all, cst_all, ap, A, B,        \
        pair_i, pair_j, maps_a, maps_b, part_s, part_t, n_slices, depth,       \
        n_col, pmax);                                                          \
  }
#define SKNETK_CONV_LAYERS(T)                                                  \
  SKNETK_CONV_LAYER(T, 0) SKNETK_CONV_LAYER(T, 1) SKNETK_CONV_LAYER(T, 2)      \
  SKNETK_CONV_LAYER(T, 3) SKNETK_CONV_LAYER(T, 4) SKNETK_CONV_LAYER(T, 5)      \
  SKNETK_CONV_LAYER(T, 6)                                                      \
  SKNETK_CONV_SLICES(T, 0) SKNETK_CONV_SLICES(T, 1) SKNETK_CONV_SLICES(T, 2)   \
  SKNETK_CONV_SLICES(T, 3) SKNETK_CONV_SLICES(T, 4) SKNETK_CONV_SLICES(T, 5)   \
  SKNETK_CONV_SLICES(T, 6)
SKNETK_CONV_LAYERS(double)
SKNETK_CONV_LAYERS(float)
SKNETK_CONV_VARIANCE(double)
SKNETK_CONV_VARIANCE(float)
"""


def kernel_source(min_blocks=None):
    """The whole RawModule source: every slice, layer and variance kernel.

    ``min_blocks`` > 0 bounds the registers of the layer kernels with
    ``__launch_bounds__(256, min_blocks)`` (that many blocks of 256 threads
    resident per multiprocessor) and of the slice kernels with the same
    threads per multiprocessor; 0: no bound. Default:
    :func:`min_blocks_per_sm`.
    """
    k = min_blocks_per_sm() if min_blocks is None else int(min_blocks)
    bounds = f"__launch_bounds__({_BLOCK}, {k})" if k > 0 else ""
    # the slice kernel: the same threads per SM in blocks of _SLICE_THREADS
    per_sm = k * _BLOCK // _SLICE_THREADS
    slice_bounds = f"__launch_bounds__({_SLICE_THREADS}, {per_sm})" if k > 0 else ""
    return (
        f"#define SKNETK_CONV_BOUNDS {bounds}\n"
        f"#define SKNETK_CONV_SLICE_BOUNDS {slice_bounds}\n"
        + CONV_SOURCE
        + _KERNEL_TEMPLATE
    )


#: Developer knob: threads per launch (grid-stride lanes are sized to it),
#: e.g. ``SKNETK_CONV_CUDA_THREADS=524288``; about the resident thread count
#: of the device by default (132 SMs x 2048 on an H100).
THREADS_ENV = "SKNETK_CONV_CUDA_THREADS"
_DEFAULT_THREADS = 2**18
#: Developer knob: image pairs per tile (a multiple of 32), overriding the
#: working-memory plan, e.g. ``SKNETK_CONV_CUDA_PAIRS=256``.
PAIRS_ENV = "SKNETK_CONV_CUDA_PAIRS"
#: Arrays of a tile's size alive at once: the two inputs, the two outputs
#: and a pooling temporary.
_TILE_ARRAYS = 5


def _env_int(name, default, low, high):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name}={text!r}: expected an integer in [{low}, {high}].")
    return int(text)


#: Developer knob: ``SKNETK_CONV_CUDA_SLICES=0`` turns the offset-slice kernel
#: (no pooling: every layer of a pair in shared memory) off, so that
#: those networks run layer by layer through device memory too.
SLICES_ENV = "SKNETK_CONV_CUDA_SLICES"
#: Threads per block of the slice kernel, and the largest dynamic shared
#: memory it asks for (the default limit of a CUDA block).
_SLICE_THREADS = 128  # a power of 2 (the block's tree sum)
_SLICE_SHARED_MAX = 48 * 1024

#: Developer knob: ``__launch_bounds__(256, k)`` on the layer kernels (0: none,
#: the default), e.g. ``SKNETK_CONV_CUDA_MIN_BLOCKS=3``. Without a bound the
#: ReLU layer kernel takes 96 registers in float32 and 127 in float64 (nvcc 13,
#: sm_90: 2 resident blocks of 256 threads per SM); a bound trades
#: occupancy against spills. One compiled module per setting.
MIN_BLOCKS_ENV = "SKNETK_CONV_CUDA_MIN_BLOCKS"


def min_blocks_per_sm():
    """The ``__launch_bounds__`` blocks per SM of the layer kernels (see
    :data:`MIN_BLOCKS_ENV`); 0: no bound."""
    return _env_int(MIN_BLOCKS_ENV, 0, 0, 8)


def threads_per_launch():
    """Target number of CUDA threads of one layer launch (see :data:`THREADS_ENV`)."""
    return _env_int(THREADS_ENV, _DEFAULT_THREADS, GROUP, 2**30)


def kernel_names(dtype):
    """``(layer kernel name format, variance kernel name)`` for ``dtype``."""
    t = "float" if np.dtype(dtype) == np.float32 else "double"
    return "sknetk_conv_layer_" + t + "_{}", "sknetk_conv_variance_" + t


# ---------------------------------------------------------------------------
# Launchers: CuPy on a GPU; the tests provide one that runs the same source
# compiled for the host (ctypes).
# ---------------------------------------------------------------------------
class _CupyLauncher:
    """Launches the RawModule kernels on the current CUDA device."""

    _modules = {}

    def __init__(self):
        import cupy

        self.xp = cupy
        k = min_blocks_per_sm()
        module = _CupyLauncher._modules.get(k)
        if module is None:
            module = cupy.RawModule(code=kernel_source(k), options=("-std=c++14",))
            _CupyLauncher._modules[k] = module
        self._module = module
        self._functions = {}

    def _get(self, name):
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = self._module.get_function(name)
        return fn

    def launch(self, name, n_threads, args):
        grid = ((n_threads + _BLOCK - 1) // _BLOCK, 1, 1)
        self._get(name)(grid, (_BLOCK, 1, 1), tuple(args))

    def launch_blocks(self, name, n_blocks, threads, shared_bytes, args):
        self._get(name)(
            (n_blocks, 1, 1), (threads, 1, 1), tuple(args), shared_mem=shared_bytes
        )

    def check_fits(self, n_bytes, what):
        _cuda.check_fits(n_bytes, what)

    def budget(self, working_memory_bytes):
        return min(working_memory_bytes, _cuda.free_device_memory() / 4)


# ---------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------
def _block_plan(spec, H, W, C, dtype):
    """Per block: its geometry, constants and where its output goes."""
    fh, fw = spec.filter_shape
    w2 = spec.weight_std * spec.weight_std
    b2 = 0.0 if spec.bias_std is None else spec.bias_std * spec.bias_std
    bias_one = 0.0 if spec.bias_std is None else 1.0
    ph, pw = spec.pool_window
    full_at = spec.full_layout()
    shapes = spec.map_shapes(H, W)
    plans = []
    hi, wi = H, W
    for block, (hc, wc, ho, wo) in enumerate(shapes):
        terms = fh * fw * (C if block == 0 else 1)
        if block - 1 in spec.pool_after:
            terms += (ph * pw) ** 2
        tol = snap_tolerance(np, np.dtype(dtype), terms)
        c_in = C if block == 0 else spec.width
        pooled = block in spec.pool_after
        full = full_at[block]
        plans.append(
            {
                "geo": {
                    "Hi": hi,
                    "Wi": wi,
                    "Ho": hc,
                    "Wo": wc,
                    "fh": fh,
                    "fw": fw,
                    "lo_h": 0 if spec.padding == "VALID" else (fh - 1) // 2,
                    "lo_w": 0 if spec.padding == "VALID" else (fw - 1) // 2,
                    "padding": {"SAME": 0, "CIRCULAR": 1, "VALID": 2}[spec.padding],
                    "full": int(full),
                    "first": int(block == 0),
                    "C": C,
                    "has_theta": int(block > 0),
                    "ntk_par": int(spec.parameterization == "ntk"),
                },
                "cst": (
                    w2 / (fh * fw),
                    b2,
                    math.nan if c_in is None else float(c_in),
                    bias_one,
                    1.0 - tol,
                ),
                "pooled": pooled,
                "out_map": (ho, wo),
                "entries": (hc * wc) ** (2 if full else 1),
                "to_diagonal": block + 1 < spec.depth
                and full
                and not full_at[block + 1],
                "full": full,
            }
        )
        hi, wi = ho, wo
    return plans


def _entries_max(plans, H, W):
    first = (H * W) ** (2 if plans[0]["full"] else 1)
    return max([first] + [p["entries"] for p in plans])


# ---------------------------------------------------------------------------
# Array helpers on the (groups, entries, 32) layout
# ---------------------------------------------------------------------------
def _pool(xp, K, H, W, window):
    ph, pw = window
    G = K.shape[0]
    ho, wo = (H - ph) // ph + 1, (W - pw) // pw + 1
    K = K.reshape(G, H, W, H, W, GROUP)[:, : ho * ph, : wo * pw, : ho * ph, : wo * pw]
    K = K.reshape(G, ho, ph, wo, pw, ho, ph, wo, pw, GROUP)
    pooled = K.sum(axis=(2, 4, 6, 8), dtype=np.float64) / float((ph * pw) ** 2)
    return xp.ascontiguousarray(pooled.reshape(G, -1, GROUP).astype(K.dtype))


def _pixel_diagonal(xp, K, P):
    G = K.shape[0]
    return xp.ascontiguousarray(K.reshape(G, P * P, GROUP)[:, :: P + 1, :])


def _readout_sums(xp, K, P, full, gap):
    """float64 sums over the readout's pixel pairs, per slot: ``(T,)``."""
    if full and not gap:
        K = K.reshape(K.shape[0], P * P, GROUP)[:, :: P + 1, :]
    return K.sum(axis=1, dtype=np.float64).reshape(-1)


# ---------------------------------------------------------------------------
# The recursion on one tile
# ---------------------------------------------------------------------------
def _geo_array(xp, geo, extra):
    values = {"moff_a": 0, "moff_b": 0, "slice0": 0, **geo}
    values.update(extra)
    return xp.asarray([int(values[name]) for name in _GEO_FIELDS], dtype=np.int64)


def _run_tile(
    launcher,
    A,
    B,
    pair_i,
    pair_j,
    maps_a,
    maps_b,
    spec,
    plans,
    act,
    want_ntk,
    collect,
    self_mode,
):
    """Run every block on the pairs ``(pair_i[t], pair_j[t])`` of one tile.

    ``maps_a``/``maps_b``: per block ``(S, INV)`` arrays ``(P_l, n)`` of the
    rows' and columns' pixel standard deviations (and their inverses); in
    ``self_mode`` (``pair_i == pair_j``, ``A is B``) they are filled here.
    Returns per collected block ``(sum_sigma, sum_theta, n_pixels)``:
    float64 readout sums of the slots and the last map's pixel count.
    """
    xp = launcher.xp
    dtype = A.dtype
    T = pair_i.shape[0]
    G = T // GROUP
    act_id, act_params = act
    ap = xp.asarray(act_params, dtype=dtype)
    layer_name, variance_name = kernel_names(dtype)
    layer_name = layer_name.format(act_id)
    dummy = xp.zeros((1,), dtype=dtype)
    sig = th = dummy
    gap = spec.readout == "gap"
    out = []
    target = threads_per_launch()
    for block, plan in enumerate(plans):
        geo = plan["geo"]
        Ho, Wo = geo["Ho"], geo["Wo"]
        P = Ho * Wo
        E = plan["entries"]
        read_here = collect[block] and not plan["pooled"]
        readout = 0
        if read_here:
            readout = 1 if (gap or not plan["full"]) else 2
        lda, ldb = maps_a[block][0].shape[1], maps_b[block][0].shape[1]
        geo_arr = _geo_array(
            xp,
            geo,
            {"want_ntk": int(want_ntk), "readout": readout, "lda": lda, "ldb": ldb},
        )
        cst = xp.asarray(plan["cst"], dtype=np.float64)
        if self_mode:
            S, INV = maps_a[block]
            launcher.launch(
                variance_name,
                G * P * GROUP,
                (geo_arr, cst, sig, A, pair_i, S, INV, np.int64(G)),
            )
        lanes = int(max(1, min(E, -(-target // (GROUP * G)))))
        sig_out = xp.empty((G, E, GROUP), dtype=dtype)
        th_out = xp.empty((G, E, GROUP), dtype=dtype) if want_ntk else dummy
        if readout:
            part_s = xp.empty((G, lanes, GROUP), dtype=np.float64)
            part_t = xp.empty((G, lanes, GROUP), dtype=np.float64)
        else:
            part_s = part_t = xp.zeros((1,), dtype=np.float64)
        launcher.launch(
            layer_name,
            G * lanes * GROUP,
            (
                geo_arr,
                cst,
                ap,
                sig,
                th,
                A,
                B,
                pair_i,
                pair_j,
                maps_a[block][0],
                maps_a[block][1],
                maps_b[block][0],
                maps_b[block][1],
                sig_out,
                th_out,
                part_s,
                part_t,
                np.int64(G),
                np.int64(lanes),
            ),
        )
        sig, th = sig_out, th_out
        del sig_out, th_out
        full = plan["full"]
        if plan["pooled"]:
            sig = _pool(xp, sig, Ho, Wo, spec.pool_window)
            if want_ntk:
                th = _pool(xp, th, Ho, Wo, spec.pool_window)
        ho, wo = plan["out_map"]
        if collect[block]:
            if readout:
                s_sum = part_s.sum(axis=1).reshape(-1)
                t_sum = part_t.sum(axis=1).reshape(-1) if want_ntk else None
            else:
                s_sum = _readout_sums(xp, sig, ho * wo, full, gap)
                t_sum = _readout_sums(xp, th, ho * wo, full, gap) if want_ntk else None
            out.append((s_sum, t_sum, ho * wo))
        if plan["to_diagonal"]:
            sig = _pixel_diagonal(xp, sig, ho * wo)
            if want_ntk:
                th = _pixel_diagonal(xp, th, ho * wo)
    return out


def _slice_setup(spec, H, W, itemsize):
    """``(n_slices, slice0, pmax, shared_bytes)`` of the offset-slice kernel,
    or ``None`` where it does not apply (pooling, a map too large for the
    shared memory, or turned off by :data:`SLICES_ENV`).

    GAP reads every offset slice out; Flatten only the zero offset (the
    diagonal pixel pairs), a single slice per image pair.
    """
    if spec.pool_after:
        return None
    if _env_int(SLICES_ENV, 1, 0, 1) == 0:
        return None
    pmax = H * W
    shared = 2 * _SLICE_THREADS * 8 + 4 * pmax * itemsize
    if shared > _SLICE_SHARED_MAX:
        return None
    circular = spec.padding == "CIRCULAR"
    if spec.readout == "flatten":
        return 1, 0 if circular else (H - 1) * (2 * W - 1) + (W - 1), pmax, shared
    n_slices = H * W if circular else (2 * H - 1) * (2 * W - 1)
    return n_slices, 0, pmax, shared


def _concat_maps(xp, maps):
    """The per-block ``(S, INV)`` maps in one array, image-major (``(n, P)``
    each, so that a block's threads read neighbouring pixels of one image),
    and each block's offset."""
    parts, offsets, off = [], [], 0
    for S, INV in maps:
        offsets.append(off)
        parts += [xp.ascontiguousarray(S.T).reshape(-1)]
        parts += [xp.ascontiguousarray(INV.T).reshape(-1)]
        off += 2 * S.size
    return xp.ascontiguousarray(xp.concatenate(parts)), offsets


def _run_slices(
    launcher,
    A,
    B,
    pair_i,
    pair_j,
    maps_a,
    maps_b,
    spec,
    plans,
    act,
    want_ntk,
    collect,
    setup,
):
    """Every block of the pairs of one tile with the offset-slice kernel.

    Returns per collected block ``(sum_sigma, sum_theta, n_pixels)`` as
    :func:`_run_tile`.
    """
    xp = launcher.xp
    dtype = A.dtype
    n_slices, slice0, pmax, shared = setup
    T = pair_i.shape[0]
    n_col = sum(collect)
    cat_a, off_a, lda = maps_a
    cat_b, off_b, ldb = maps_b
    geo_all = xp.stack(
        [
            _geo_array(
                xp,
                plan["geo"],
                {
                    "want_ntk": int(want_ntk),
                    "readout": int(collect[block]),
                    "lda": lda,
                    "ldb": ldb,
                    "moff_a": off_a[block],
                    "moff_b": off_b[block],
                    "slice0": slice0,
                },
            )
            for block, plan in enumerate(plans)
        ]
    )
    cst_all = xp.asarray([plan["cst"] for plan in plans], dtype=np.float64)
    part_s = xp.empty((T, n_slices, n_col), dtype=np.float64)
    part_t = xp.empty((T, n_slices, n_col), dtype=np.float64)
    act_id, act_params = act
    launcher.launch_blocks(
        "sknetk_conv_slices_{}_{}".format(
            "float" if np.dtype(dtype) == np.float32 else "double", act_id
        ),
        T * n_slices,
        _SLICE_THREADS,
        shared,
        (
            xp.ascontiguousarray(geo_all),
            cst_all,
            xp.asarray(act_params, dtype=dtype),
            A,
            B,
            pair_i,
            pair_j,
            cat_a,
            cat_b,
            part_s,
            part_t,
            np.int64(n_slices),
            np.int64(len(plans)),
            np.int64(n_col),
            np.int64(pmax),
        ),
    )
    s_sums = part_s.sum(axis=1)
    t_sums = part_t.sum(axis=1)
    out = []
    k = 0
    for block, plan in enumerate(plans):
        if collect[block]:
            ho, wo = plan["out_map"]
            out.append((s_sums[:, k], t_sums[:, k] if want_ntk else None, ho * wo))
            k += 1
    return out


def _finish(spec, s_sum, t_sum, n_pix, want_ntk):
    """The Dense(1) readout layer on the float64 readout sums."""
    gap = spec.readout == "gap"
    w2 = spec.weight_std * spec.weight_std
    b2 = 0.0 if spec.bias_std is None else spec.bias_std * spec.bias_std
    bias_one = 0.0 if spec.bias_std is None else 1.0
    count = float(n_pix * n_pix if gap else n_pix)
    s_r = s_sum / count
    nngp = w2 * s_r + b2
    ntk = None
    if want_ntk:
        t_r = t_sum / count
        if spec.parameterization == "ntk":
            ntk = nngp + w2 * t_r
        else:
            width = math.nan if spec.width is None else spec.width
            n_in = float(width * (1 if gap else n_pix))
            ntk = n_in * s_r + w2 * t_r + bias_one
    return nngp, ntk


def _pad_pairs(xp, i, j):
    """Pair index arrays padded to a multiple of 32 (repeating the last pair)."""
    n = i.shape[0]
    T = -(-n // GROUP) * GROUP
    if T != n:
        i = np.concatenate([i, np.full(T - n, i[-1])])
        j = np.concatenate([j, np.full(T - n, j[-1])])
    return xp.asarray(i, dtype=np.int64), xp.asarray(j, dtype=np.int64)


def _pairs(symmetric, n1, n2, t0, t1):
    """Rows and columns of the linear pairs ``t0 .. t1 - 1`` (NumPy).

    ``symmetric``: the strict upper triangle ``i < j`` row by row; else all
    ``(i, j)`` row-major.
    """
    t = np.arange(t0, t1, dtype=np.int64)
    if not symmetric:
        return t // n2, t % n2
    # row i starts at offsets[i] = i n - i (i + 1) / 2
    rows = np.arange(n1 + 1, dtype=np.int64)
    offsets = rows * n1 - rows * (rows + 1) // 2
    i = np.searchsorted(offsets, t, side="right") - 1
    return i, t - offsets[i] + i + 1


def _tile_pairs(spec, plans, H, W, itemsize, budget):
    env = _env_int(PAIRS_ENV, 0, GROUP, 2**24)
    if env:
        return -(-env // GROUP) * GROUP
    per_pair = _TILE_ARRAYS * itemsize * _entries_max(plans, H, W)
    return max(GROUP, int(budget // per_pair) // GROUP * GROUP)


def _self_path(launcher, X, spec, plans, act, want_ntk, all_depths, tile):
    """Pixel-variance maps of every block and the exact diagonals ``K(x, x)``."""
    xp = launcher.xp
    n = X.shape[0]
    maps = [
        (
            xp.zeros((p["geo"]["Ho"] * p["geo"]["Wo"], max(n, 1)), dtype=X.dtype),
            xp.zeros((p["geo"]["Ho"] * p["geo"]["Wo"], max(n, 1)), dtype=X.dtype),
        )
        for p in plans
    ]
    collect = [all_depths or b == spec.depth - 1 for b in range(spec.depth)]
    n_col = sum(collect)
    diag = {"nngp": xp.zeros((n_col, n)), "ntk": xp.zeros((n_col, n))}
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        idx = np.arange(i0, i1, dtype=np.int64)
        pi, pj = _pad_pairs(xp, idx, idx)
        sums = _run_tile(
            launcher,
            X,
            X,
            pi,
            pj,
            maps,
            maps,
            spec,
            plans,
            act,
            want_ntk,
            collect,
            True,
        )
        for k, (s_sum, t_sum, n_pix) in enumerate(sums):
            nngp, ntk = _finish(spec, s_sum, t_sum, n_pix, want_ntk)
            diag["nngp"][k, i0:i1] = nngp[: i1 - i0]
            if want_ntk:
                diag["ntk"][k, i0:i1] = ntk[: i1 - i0]
    finite = bool(xp.all(xp.isfinite(diag["nngp"]))) and bool(
        xp.all(xp.isfinite(diag["ntk"]))
    )
    finite = finite and all(bool(xp.all(xp.isfinite(S))) for S, _ in maps)
    if not finite:
        raise ValueError(
            f"The convolutional kernel overflows {X.dtype} (NaN or infinity) at "
            f"depth {spec.depth}: the images are too large in magnitude for "
            f"weight_std={spec.weight_std!r}, bias_std={spec.bias_std!r} and the "
            "activation's parameters. Scale the pixels (e.g. to [0, 1] or unit "
            "variance)."
        )
    return maps, diag


def conv_kernels(launcher, X, Y, spec, want, all_depths, budget):
    """The requested kernels of ``X`` and ``Y`` with the fused kernels.

    ``launcher`` runs the compiled kernels (:class:`_CupyLauncher` on a GPU)
    and provides the array module ``launcher.xp`` of ``X`` and ``Y`` (NHWC,
    C-contiguous, float32 or float64). Returns ``{name: (n_depths, n1, n2)}``
    in the dtype of ``X``, as ``sknetk._conv.compute_kernels``.
    """
    xp = launcher.xp
    symmetric = Y is None
    Yv = X if symmetric else Y
    X = xp.ascontiguousarray(X)
    Yv = X if symmetric else xp.ascontiguousarray(Yv)
    n1, H, W, C = X.shape
    n2 = Yv.shape[0]
    dtype = X.dtype
    plans = _block_plan(spec, H, W, C, dtype)  # a vanishing map raises here
    want_ntk = "ntk" in want
    fused = _cuda.fused_activation(spec.dense_spec())
    if fused is None:  # pragma: no cover - every registered activation is fused
        raise NotImplementedError(
            f"activation {spec.activation!r} has no fused CUDA form"
        )
    n_depths = spec.depth if all_depths else 1
    itemsize = np.dtype(dtype).itemsize
    launcher.check_fits(
        len(want) * n_depths * n1 * n2 * itemsize,
        f"The {' and '.join(want)} kernel(s) of {n1} x {n2} images",
    )
    out = {name: xp.empty((n_depths, n1, n2), dtype=dtype) for name in want}
    tile = _tile_pairs(spec, plans, H, W, itemsize, launcher.budget(budget))
    launcher.check_fits(
        _TILE_ARRAYS * itemsize * _entries_max(plans, H, W) * tile,
        f"One tile of {tile} image pairs",
    )
    maps_x, d_x = _self_path(
        launcher, X, spec, plans, fused, want_ntk, all_depths, tile
    )
    maps_y, d_y = (
        (maps_x, d_x)
        if symmetric
        else _self_path(launcher, Yv, spec, plans, fused, want_ntk, all_depths, tile)
    )
    roots_x = {k: xp.sqrt(xp.maximum(v, 0.0)) for k, v in d_x.items()}
    roots_y = (
        roots_x
        if symmetric
        else {k: xp.sqrt(xp.maximum(v, 0.0)) for k, v in d_y.items()}
    )
    collect = [all_depths or b == spec.depth - 1 for b in range(spec.depth)]
    total = n1 * (n1 - 1) // 2 if symmetric else n1 * n2
    setup = _slice_setup(spec, H, W, itemsize)
    if setup is not None:
        # no pixel-pair arrays in device memory: only the readout partials
        n_slices = setup[0]
        per_pair = n_slices * sum(collect) * 16
        tile = max(
            1, min(int(launcher.budget(budget)) // per_pair, (2**31 - 1) // n_slices)
        )
        cat_x = _concat_maps(xp, maps_x) + (n1,)
        cat_y = cat_x if symmetric else _concat_maps(xp, maps_y) + (n2,)
    for t0 in range(0, total, tile):
        t1 = min(total, t0 + tile)
        i, j = _pairs(symmetric, n1, n2, t0, t1)
        if setup is not None:
            pi, pj = xp.asarray(i, dtype=np.int64), xp.asarray(j, dtype=np.int64)
            sums = _run_slices(
                launcher,
                X,
                Yv,
                pi,
                pj,
                cat_x,
                cat_y,
                spec,
                plans,
                fused,
                want_ntk,
                collect,
                setup,
            )
        else:
            pi, pj = _pad_pairs(xp, i, j)
            sums = _run_tile(
                launcher,
                X,
                Yv,
                pi,
                pj,
                maps_x,
                maps_y,
                spec,
                plans,
                fused,
                want_ntk,
                collect,
                False,
            )
        ii, jj = pi[: t1 - t0], pj[: t1 - t0]
        for k, (s_sum, t_sum, n_pix) in enumerate(sums):
            nngp, ntk = _finish(
                spec,
                s_sum[: t1 - t0],
                None if t_sum is None else t_sum[: t1 - t0],
                n_pix,
                want_ntk,
            )
            for name, vals in (("nngp", nngp), ("ntk", ntk)):
                if name not in out:
                    continue
                # Cauchy-Schwarz: |K(x, y)| <= sqrt(K(x, x) K(y, y))
                bound = roots_x[name][k][ii] * roots_y[name][k][jj]
                vals = xp.minimum(xp.maximum(vals, -bound), bound).astype(dtype)
                out[name][k, ii, jj] = vals
                if symmetric:
                    out[name][k, jj, ii] = vals
    if symmetric:
        idx = xp.arange(n1)
        for name in out:
            out[name][:, idx, idx] = d_x[name].astype(dtype)
    return out


def conv_diagonals(launcher, X, spec, want, all_depths, budget):
    """The exact diagonals ``K(x, x)`` alone: ``{name: (n_depths, n)}``.

    The per-image recursion of :func:`conv_kernels` (every pixel pair of
    each image with itself), in the dtype of ``X``.
    """
    xp = launcher.xp
    X = xp.ascontiguousarray(X)
    _, H, W, C = X.shape
    dtype = X.dtype
    plans = _block_plan(spec, H, W, C, dtype)
    fused = _cuda.fused_activation(spec.dense_spec())
    itemsize = np.dtype(dtype).itemsize
    tile = _tile_pairs(spec, plans, H, W, itemsize, launcher.budget(budget))
    _, diag = _self_path(
        launcher, X, spec, plans, fused, "ntk" in want, all_depths, tile
    )
    return {name: diag[name].astype(dtype) for name in want}


def conv_diagonals_cupy(X, spec, want, all_depths, budget):
    """:func:`conv_diagonals` on the current CUDA device (CuPy arrays)."""
    return conv_diagonals(_CupyLauncher(), X, spec, want, all_depths, budget)


def conv_kernels_cupy(X, Y, spec, want, all_depths, budget, n_jobs=None):
    """:func:`conv_kernels` on the current CUDA device; CuPy arrays in and out.

    Same arguments and result as ``sknetk._conv.compute_kernels`` (``n_jobs``
    is ignored: the device parallelises inside each launch).
    """
    return conv_kernels(_CupyLauncher(), X, Y, spec, want, all_depths, budget)
