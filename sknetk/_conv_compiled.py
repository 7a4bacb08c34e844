"""The compiled pixel-pair recursion of convolutional kernels (ReLU family).

An optional fast path of :mod:`sknetk._conv` for the activations whose duals
are arccos forms (``relu``, ``abs``, ``leaky_relu``, ``abrelu``), in float64
on NumPy: with numba installed (the ``fast`` extra), :func:`compiled_conv`
compiles :func:`conv_pairs` on first use (cached on disk where numba can
write), and :func:`run_pairs` runs it over lists of image pairs in threads
(the kernel releases the GIL). Without numba, or where numba fails to compile
it (a ``RuntimeWarning``), :mod:`sknetk._conv` keeps its NumPy path.

One image pair at a time, through all blocks, in four scratch arrays of the
largest pixel-pair matrix (``P^2`` entries, or ``P`` in the diagonal layout)
and a few plane-sized ones that stay in cache:

* the pixel-pair matrices are stored ``(h, h', w, w')``: one ``(h, h')``
  plane holds all ``(w, w')`` pairs. The Conv's patch operator shifts both
  pixel indices by the same offset, so it is separable: the ``fw`` offsets
  act inside each plane and the ``fh`` offsets across planes along their
  diagonal ``h' - h``. Each input plane is read with margins (zeros for
  SAME, periodic for CIRCULAR, none for VALID), where each in-plane offset
  is one flat shift; walking each diagonal of planes, a ring of ``fh`` such
  planes gives each output plane, and the activation's dual (NNGP and NTK)
  runs on it in one flat, vectorised loop that adds the ``fh`` taps,
  accumulates the GAP readout and writes the output plane;
* the padded layout (SAME padding, GAP readout, no pooling: the benchmarked
  networks): every plane is stored with its zero margins (``Wz = W + fw - 1``
  rows of ``Wz``), so that the in-plane offsets read it in place and the
  activation's loop writes its output plane straight into the next block's
  input (the ``Wz - W`` columns past the map land in the margins and are
  zeroed again). Otherwise each input plane is copied into a padded plane
  and each output plane compacted;
* the hot loops index slices (views) with their loop counter: numba then
  knows the indices are not negative and LLVM vectorises them without
  wraparound selects (twice as fast as offsets added inside the index);
* SAME, CIRCULAR and VALID padding, any filter shape, both
  parameterizations, biases, AvgPool after chosen blocks and both readouts
  (Flatten: the diagonal pixel pairs) are compiled, as is the diagonal
  layout (only the ``P`` pairs ``(p, p)``, once no pooling lies ahead of a
  Flatten readout; its patch sums are separable too: rows, then columns);
* the per-image pass (``self_mode``) computes each block's pixel variances
  ``q(x, p)`` (the conv output's diagonal, from the main diagonal of planes
  before the other planes need them) and the exact diagonals ``K(x, x)``;
  its matrices are symmetric, so it computes the planes with ``h' >= h`` and
  mirrors the others (not in the padded layout, whose next block reads only
  those).

The arithmetic is that of the NumPy path (``sknetk._conv._abrelu_numpy``:
clipping, snapping to +-1 within the block's tolerance, ``rho = 0`` for a
zero variance), except the order of the patch sums and readout sums, fused
multiply-adds (``fastmath={"contract"}`` only) and
:func:`sknetk._recursion.acos_rational` for ``arccos``: the kernels agree to
rounding, within 1e-12 of ``max |K|`` (``tests/test_conv_compiled.py``).
"""

import math
import warnings

import numpy as np

from ._recursion import LazyJit, acos_rational

__all__ = [
    "CIRCULAR",
    "SAME",
    "VALID",
    "compiled_conv",
    "conv_pairs",
    "run_pairs",
]

SAME, CIRCULAR, VALID = 0, 1, 2

# Columns of ``geo`` (one row per block)
_HI, _WI, _HC, _WC, _HO, _WO, _POOL, _FULL, _COLLECT, _FULL_NEXT = range(10)


def _tile_stds(s, inv, h, Wc, Wz, R, A, column):
    """The stds ``s`` (inverses ``inv``) of row ``h`` tiled over a plane.

    ``R[w Wz + v] = s[h Wc + w]`` (the row pixel, constant along a row) or,
    with ``column``, ``s[h Wc + v]`` (the column pixel); zero in the columns
    ``v >= Wc``. The same for ``inv`` in ``A``.
    """
    s_h = s[h * Wc : (h + 1) * Wc]
    i_h = inv[h * Wc : (h + 1) * Wc]
    for w in range(Wc):
        row = w * Wz
        r_row = R[row : row + Wz]
        a_row = A[row : row + Wz]
        if column:
            for v in range(Wc):
                r_row[v] = s_h[v]
                a_row[v] = i_h[v]
        else:
            sw = s_h[w]
            iw = i_h[w]
            for v in range(Wc):
                r_row[v] = sw
                a_row[v] = iw
        for v in range(Wc, Wz):
            r_row[v] = 0.0
            a_row[v] = 0.0


def _shift_sum(src, dst, n, taps, step):
    """``dst[k] = sum_b src[k + b step]`` over ``b < taps``, for ``k < n``."""
    out = dst[:n]
    if taps == 3:
        z0 = src[:n]
        z1 = src[step : step + n]
        z2 = src[2 * step : 2 * step + n]
        for k in range(n):
            out[k] = (z0[k] + z1[k]) + z2[k]
        return
    z0 = src[:n]
    for k in range(n):
        out[k] = z0[k]
    for b in range(1, taps):
        z0 = src[b * step : b * step + n]
        for k in range(n):
            out[k] += z0[k]


def conv_pairs(
    A, B, rows, cols, self_mode, want_ntk, geo, ints, par, tols, cin, nin,
    sa, ia, sb, ib, q_out, nngp_out, ntk_out,
):  # fmt: skip
    """Kernels of the image pairs ``(A[rows[t]], B[cols[t]])`` (numba compiles it).

    Parameters
    ----------
    A, B : float64 arrays of shape (na, P0, C), (nb, P0, C)
        Images, pixels row-major.
    rows, cols : int64 arrays of shape (m,)
        The pairs. In ``self_mode`` the pairs are ``(A[rows[t]], A[rows[t]])``.
    geo : int64 array of shape (depth, 10)
        Per block: input map ``Hi, Wi``, conv map ``Hc, Wc``, output map
        ``Ho, Wo`` (after pooling), pooled, full layout, output index
        (-1: not collected), full layout of the next block.
    ints : int64 array
        ``fh, fw, lo_h, lo_w, padding, ph, pw``.
    par : float64 array
        ``w2, b2, w2 / (fh fw), bias_one, factor, c1, ntk_par, gap``.
    tols, cin, nin : float64 arrays of shape (depth,)
        Snapping tolerances, fan-in channels of each Conv (``"standard"``)
        and the readout fan-in ``N_in`` at each block (``"standard"``).
    sa, ia, sb, ib : float64 arrays of shape (n, depth, Pmax)
        Standard deviations ``sqrt(q)`` of the pixels and their inverses (0
        where ``q = 0``); unused in ``self_mode``.
    q_out : float64 array of shape (m, depth, Pmax)
        ``self_mode``: the variances ``q`` of each block.
    nngp_out, ntk_out : float64 arrays of shape (m, n_out)
        The kernels of each pair at each collected block.
    """
    m = rows.shape[0]
    P0 = A.shape[1]
    C = A.shape[2]
    depth = geo.shape[0]
    fh, fw, lo_h, lo_w, pad, ph, pw = (
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], ints[6],
    )  # fmt: skip
    wvar, b2, scale, bias_one, factor, c1 = (
        par[0],
        par[1],
        par[2],
        par[3],
        par[4],
        par[5],
    )
    ntk_par = par[6] != 0.0
    gap = par[7] != 0.0
    W0 = geo[0, _WI]
    Wm = W0 + fw - 1
    # the padded layout: SAME, GAP and no pooling (every map H0 x W0): each
    # plane of the pixel-pair matrices is stored with its zero margins (Wm
    # rows of Wm, plus fw - 1), so that the fw offsets read it in place and
    # the activation writes its output plane there with one flat shift
    padded = pad == SAME and gap and geo[0, _FULL] != 0
    for blk in range(depth):
        if geo[blk, _POOL] != 0:
            padded = False
    zs = Wm * Wm + fw - 1  # a plane's stride in the padded layout
    z_off = lo_w * Wm + lo_w  # where its map starts
    # the pixel-pair matrices; in the diagonal layout also a map's rows of
    # Wz = W + fw - 1 before they are compacted
    size = P0 * P0 if geo[0, _FULL] != 0 else P0
    size = max(size, geo[0, _HI] * (geo[0, _WI] + fw))
    if padded:
        size = geo[0, _HI] * geo[0, _HI] * zs
    # zeros: the margins of the padded layout stay zero
    S = np.zeros(size)
    T = np.zeros(size)
    S2 = np.zeros(size)
    T2 = np.zeros(size)
    Z = np.empty(Wm * Wm + fw)  # an input plane with its margins
    ZT = np.empty(Wm * Wm + fw)
    # ring of fh planes after the fw offsets, then a zero plane and the sum
    # of the taps but the last two (filters of more than 3 rows)
    # (2-D: a row index is loop-invariant, and the loop counter indexes the
    # plane without wraparound selects or views)
    RS = np.zeros((fh + 2, Wm * Wm))
    RT = np.zeros((fh + 2, Wm * Wm))
    CS = np.empty(Wm * Wm)  # sums of the GAP readout, per plane entry
    CT = np.empty(Wm * Wm)
    ON = np.empty(Wm * Wm)  # one output plane after the activation
    OT = np.empty(Wm * Wm)
    # the stds of the pixels of each row h (rows: R1T, A1T, columns: R2T,
    # A2T) tiled over a ring plane (Wc rows of Wz)
    # (row h: its ring plane)
    R1T = np.zeros((geo[0, _HI], Wm * Wm))
    A1T = np.zeros((geo[0, _HI], Wm * Wm))
    R2T = np.zeros((geo[0, _HI], Wm * Wm))
    A2T = np.zeros((geo[0, _HI], Wm * Wm))
    # the diagonal layout's padded map
    ZD = np.empty((geo[0, _HI] + fh) * (W0 + fw) + fw)
    ZDT = np.empty((geo[0, _HI] + fh) * (W0 + fw) + fw)
    RH = np.empty(ZD.shape[0])  # its rows after the fw offsets
    RHT = np.empty(ZD.shape[0])
    s_own = np.empty(P0)
    i_own = np.empty(P0)
    fC = float(C)
    for t in range(m):
        i = rows[t]
        j = rows[t] if self_mode else cols[t]
        Bx = A if self_mode else B
        H0 = geo[0, _HI]
        W0 = geo[0, _WI]
        full = geo[0, _FULL] != 0
        # -- Sigma^0 = <x_p, y_p'> / C, layout (h, h', w, w') or (h, w) --
        if full:
            for h in range(H0):
                for w in range(W0):
                    p = h * W0 + w
                    for h2 in range(H0):
                        if padded:
                            base = (h * H0 + h2) * zs + z_off + w * Wm
                        else:
                            base = ((h * H0 + h2) * W0 + w) * W0
                        p2 = h2 * W0
                        srow = S[base : base + W0]
                        brow = Bx[j, p2 : p2 + W0]
                        for w2 in range(W0):
                            srow[w2] = 0.0
                        for c in range(C):
                            x = A[i, p, c]
                            for w2 in range(W0):
                                srow[w2] += x * brow[w2, c]
                        for w2 in range(W0):
                            srow[w2] = srow[w2] / fC
        else:
            for p in range(H0 * W0):
                acc = 0.0
                for c in range(C):
                    acc += A[i, p, c] * Bx[j, p, c]
                S[p] = acc / fC
        has_theta = False
        for blk in range(depth):
            Hi = geo[blk, _HI]
            Wi = geo[blk, _WI]
            Hc = geo[blk, _HC]
            Wc = geo[blk, _WC]
            tol = tols[blk]
            snap = 1.0 - tol
            c_in = cin[blk]
            sum_s = 0.0
            sum_t = 0.0
            fuse_sum = gap and geo[blk, _POOL] == 0 and geo[blk, _COLLECT] >= 0
            # the block's pixel-pair matrices are needed after it (not: the
            # last block with the GAP sums taken in its pass)
            keep = blk + 1 < depth or not fuse_sum
            # the NTK of the Conv: t_scale Theta-patch + own, own = sig
            # ("ntk") or c_in patch + bias_one ("standard")
            t_scale = scale if has_theta else 0.0
            o_sig = 1.0 if ntk_par else 0.0
            o_patch = 0.0 if ntk_par else c_in
            o_one = 0.0 if ntk_par else bias_one
            if full:
                WWi = Wi * Wi
                WW = Wc * Wc
                Wz = Wi + fw - 1 if pad != VALID else Wi  # padded width
                RW = Wc * Wz  # a ring plane: Wc rows of Wz (Wz - Wc unused)
                for k in range(RW):
                    RS[fh, k] = 0.0  # the zero plane (RW changes with VALID)
                    RT[fh, k] = 0.0
                if not padded:
                    for k in range(Z.shape[0]):
                        Z[k] = 0.0
                        ZT[k] = 0.0
                for k in range(RW):
                    CS[k] = 0.0
                    CT[k] = 0.0
                if not self_mode:
                    for h in range(Hc):
                        _tile_stds(
                            sa[i, blk], ia[i, blk], h, Wc, Wz, R1T[h], A1T[h], False
                        )
                        _tile_stds(
                            sb[j, blk], ib[j, blk], h, Wc, Wz, R2T[h], A2T[h], True
                        )
                # Output plane (h, h2) of the (h, h', w, w') layout sums the
                # fh input planes (h + a - lo_h, h2 + a - lo_h), each after the
                # fw offsets inside the plane. Walking each diagonal
                # h2 - h = delta, one new input plane per output plane goes
                # through the fw offsets into a ring of fh planes (in cache);
                # the main diagonal first: in self_mode it gives the
                # variances q of every pixel before the other planes need them.
                for di in range(2 * Hc - 1):
                    delta = (di + 1) // 2
                    if di % 2 == 0:
                        delta = -delta
                    if self_mode and delta < 0:
                        continue  # symmetric: mirrored below
                    # in self_mode a plane above the diagonal counts twice
                    wsum = 2.0 if self_mode and delta > 0 else 1.0
                    h_first = max(0, -delta)
                    h_last = min(Hc, Hc - delta)
                    for u in range(h_first - lo_h, h_last - lo_h + fh - 1):
                        if u >= h_first - lo_h + fh - 1:
                            # the ring holds the planes of this output's taps
                            h = u - fh + 1 + lo_h
                        else:
                            h = -1
                        # -- input plane (u, u + delta) through the fw offsets:
                        # copied into the padded plane Z (zero or periodic
                        # margins), each offset is one flat shift of Z --
                        slot = u % fh
                        us = u
                        us2 = u + delta
                        valid = True
                        if pad == CIRCULAR:
                            us = us % Hi
                            us2 = us2 % Hi
                        elif us < 0 or us >= Hi or us2 < 0 or us2 >= Hi:
                            valid = False
                        if not valid:
                            for k in range(RW):
                                RS[slot, k] = 0.0
                                RT[slot, k] = 0.0
                            continue_plane = True
                        else:
                            continue_plane = False
                        if not continue_plane:
                            src0 = (us * Hi + us2) * WWi
                            if padded:
                                # the plane with its margins, in place
                                ZP = S
                                ZPT = T
                                zb = (us * Hi + us2) * zs
                            else:
                                ZP = Z
                                ZPT = ZT
                                zb = 0
                            if padded:
                                pass
                            elif pad == CIRCULAR:
                                for r in range(Wz):
                                    rs = src0 + ((r - lo_w) % Wi) * Wi
                                    for c in range(Wz):
                                        Z[r * Wz + c] = S[rs + (c - lo_w) % Wi]
                                if has_theta:
                                    for r in range(Wz):
                                        rs = src0 + ((r - lo_w) % Wi) * Wi
                                        for c in range(Wz):
                                            ZT[r * Wz + c] = T[rs + (c - lo_w) % Wi]
                            else:
                                for w in range(Wi):
                                    zr = (w + lo_w) * Wz + lo_w
                                    sr = src0 + w * Wi
                                    for c in range(Wi):
                                        Z[zr + c] = S[sr + c]
                                if has_theta:
                                    for w in range(Wi):
                                        zr = (w + lo_w) * Wz + lo_w
                                        sr = src0 + w * Wi
                                        for c in range(Wi):
                                            ZT[zr + c] = T[sr + c]
                            d1 = Wz + 1
                            if fw == 3:  # the common filter: one pass
                                # (views: indices that cannot be negative
                                # vectorise without wraparound checks)
                                d2 = zb + 2 * d1
                                d1 = zb + d1
                                z0 = ZP[zb : zb + RW]
                                z1 = ZP[d1 : d1 + RW]
                                z2 = ZP[d2 : d2 + RW]
                                rs = RS[slot]
                                for k in range(RW):
                                    rs[k] = (z0[k] + z1[k]) + z2[k]
                                if has_theta:
                                    z0 = ZPT[zb : zb + RW]
                                    z1 = ZPT[d1 : d1 + RW]
                                    z2 = ZPT[d2 : d2 + RW]
                                    rs = RT[slot]
                                    for k in range(RW):
                                        rs[k] = (z0[k] + z1[k]) + z2[k]
                            else:
                                rs = RS[slot]
                                z0 = ZP[zb : zb + RW]
                                for k in range(RW):
                                    rs[k] = z0[k]
                                for b in range(1, fw):
                                    off = zb + b * d1
                                    z0 = ZP[off : off + RW]
                                    for k in range(RW):
                                        rs[k] += z0[k]
                                if has_theta:
                                    rs = RT[slot]
                                    z0 = ZPT[zb : zb + RW]
                                    for k in range(RW):
                                        rs[k] = z0[k]
                                    for b in range(1, fw):
                                        off = zb + b * d1
                                        z0 = ZPT[off : off + RW]
                                        for k in range(RW):
                                            rs[k] += z0[k]
                            if not has_theta:
                                for k in range(RW):
                                    RT[slot, k] = 0.0
                        if h < 0:
                            continue
                        # -- output plane (h, h2): the fh taps, in order --
                        h2 = h + delta
                        # the activation's loop adds the taps in their order,
                        # (R0 + R1) + R2, from the slots s0, s1 and s_last:
                        # with fewer taps, the zero plane (0 + x = x); with
                        # more, the sum PS of the first fh - 1 taps (PS + 0)
                        s_last = (h - lo_h + fh - 1) % fh
                        s0 = fh  # the zero plane
                        s1 = fh
                        if fh == 2:
                            s1 = (h - lo_h) % fh
                        elif fh == 3:
                            s0 = (h - lo_h) % fh
                            s1 = (h - lo_h + 1) % fh
                        elif fh > 3:
                            s0 = fh + 1
                            a0 = (h - lo_h) % fh
                            a1 = (h - lo_h + 1) % fh
                            for k in range(RW):
                                RS[s0, k] = RS[a0, k] + RS[a1, k]
                            for k in range(RW):
                                RT[s0, k] = RT[a0, k] + RT[a1, k]
                            for a in range(2, fh - 1):
                                sl = (h - lo_h + a) % fh
                                for k in range(RW):
                                    RS[s0, k] += RS[sl, k]
                                if has_theta:
                                    for k in range(RW):
                                        RT[s0, k] += RT[sl, k]
                        if self_mode and delta == 0:
                            for w in range(Wc):
                                kd = w * Wz + w
                                d_in = (RS[s0, kd] + RS[s1, kd]) + RS[s_last, kd]
                                q = scale * d_in + b2
                                q_out[t, blk, h * Wc + w] = q
                                s = math.sqrt(q)
                                s_own[h * Wc + w] = s
                                i_own[h * Wc + w] = 1.0 / s if s > 0.0 else 0.0
                            _tile_stds(s_own, i_own, h, Wc, Wz, R1T[h], A1T[h], False)
                            _tile_stds(s_own, i_own, h, Wc, Wz, R2T[h], A2T[h], True)
                        # the activation on the plane, one flat loop over its
                        # Wc rows of Wz (vectorised whatever Wc; the Wz - Wc
                        # columns past the map have zero stds and are dropped)
                        # padded: straight into the output plane (the Wz - Wc
                        # columns land in its margins, zeroed below)
                        direct = padded and keep
                        if direct:
                            OS = S2
                            OST = T2
                            ob = (h * Hc + h2) * zs + z_off
                        else:
                            OS = ON
                            OST = OT
                            ob = 0
                        out_s = OS[ob : ob + RW]
                        out_t = OST[ob : ob + RW]
                        for k in range(RW):
                            patch = (RS[s0, k] + RS[s1, k]) + RS[s_last, k]
                            sig = scale * patch + b2
                            own = o_sig * sig + (o_patch * patch + o_one)
                            th = (RT[s0, k] + RT[s1, k]) + RT[s_last, k]
                            th = t_scale * th + own
                            rho = (A1T[h, k] * A2T[h2, k]) * sig
                            rho = min(max(rho, -1.0), 1.0)
                            if abs(rho) > snap:
                                rho = math.copysign(1.0, rho)
                            sin = math.sqrt((1.0 - rho) * (1.0 + rho))
                            dot = acos_rational(rho) * (-factor) + c1
                            new = (R1T[h, k] * R2T[h2, k]) * (sin * factor + rho * dot)
                            th = th * dot
                            out_s[k] = new
                            out_t[k] = th
                            # sums of the GAP readout: no serial dependency
                            CS[k] += wsum * new
                            CT[k] += wsum * th
                        if not keep:
                            continue
                        if direct:
                            for w in range(Wc):
                                for v2 in range(Wc, Wz):
                                    S2[ob + w * Wz + v2] = 0.0
                                    T2[ob + w * Wz + v2] = 0.0
                            continue
                        dst0 = (h * Hc + h2) * WW
                        for w in range(Wc):
                            for v2 in range(Wc):
                                S2[dst0 + w * Wc + v2] = ON[w * Wz + v2]
                                T2[dst0 + w * Wc + v2] = OT[w * Wz + v2]
                for w in range(Wc):
                    for v2 in range(Wc):
                        sum_s += CS[w * Wz + v2]
                        sum_t += CT[w * Wz + v2]
                if self_mode and keep and not padded:
                    # the planes below the diagonal: (h, h2)[w, v2] =
                    # (h2, h)[v2, w] (the padded layout's next block reads
                    # only the planes h2 >= h: no padding wraps rows around
                    # and no pooling or unfused readout reads them all)
                    for h in range(Hc):
                        for h2 in range(h):
                            dst0 = (h * Hc + h2) * WW
                            src0 = (h2 * Hc + h) * WW
                            for w in range(Wc):
                                for v2 in range(Wc):
                                    S2[dst0 + w * Wc + v2] = S2[src0 + v2 * Wc + w]
                                    T2[dst0 + w * Wc + v2] = T2[src0 + v2 * Wc + w]
                S, S2 = S2, S
                T, T2 = T2, T
            else:
                # diagonal layout: the map copied into the padded map ZD
                # (zero or periodic margins), each offset is one flat shift
                # of it; the sums land in S2, T2 (rows of Wz)
                Hz = Hi + fh - 1 if pad != VALID else Hi
                Wz = Wi + fw - 1 if pad != VALID else Wi
                nz = Hc * Wz
                if pad == CIRCULAR:
                    for r in range(Hz):
                        rs = ((r - lo_h) % Hi) * Wi
                        for c in range(Wz):
                            ZD[r * Wz + c] = S[rs + (c - lo_w) % Wi]
                            ZDT[r * Wz + c] = T[rs + (c - lo_w) % Wi]
                else:
                    for k in range(Hz * Wz + fw):
                        ZD[k] = 0.0
                        ZDT[k] = 0.0
                    for h in range(Hi):
                        zr = (h + lo_h) * Wz + lo_w
                        zd = ZD[zr : zr + Wi]
                        zt = ZDT[zr : zr + Wi]
                        sr = S[h * Wi : (h + 1) * Wi]
                        tr = T[h * Wi : (h + 1) * Wi]
                        for w in range(Wi):
                            zd[w] = sr[w]
                            zt[w] = tr[w]
                for k in range(Hz * Wz, Hz * Wz + fw):
                    ZD[k] = 0.0  # read by the dropped columns only
                    ZDT[k] = 0.0
                # separable: the fw offsets along each row (RH), then the fh
                # offsets across rows (S2)
                nh = Hz * Wz
                _shift_sum(ZD, RH, nh, fw, 1)
                _shift_sum(RH, S2, nz, fh, Wz)
                if has_theta:
                    _shift_sum(ZDT, RHT, nh, fw, 1)
                    _shift_sum(RHT, T2, nz, fh, Wz)
                # compact rows of Wc, in place (row h moves left)
                for h in range(1, Hc):
                    sd = S2[h * Wc : (h + 1) * Wc]
                    ss = S2[h * Wz : h * Wz + Wc]
                    td = T2[h * Wc : (h + 1) * Wc]
                    ts = T2[h * Wz : h * Wz + Wc]
                    for w in range(Wc):
                        sd[w] = ss[w]
                        td[w] = ts[w]
                n_p = Hc * Wc
                if not has_theta:
                    for p in range(n_p):
                        T2[p] = 0.0
                if self_mode:
                    for p in range(n_p):
                        q = scale * S2[p] + b2
                        q_out[t, blk, p] = q
                        sq = math.sqrt(q)
                        s_own[p] = sq
                        i_own[p] = 1.0 / sq if sq > 0.0 else 0.0
                    sva = s_own
                    iva = i_own
                    svb = s_own
                    ivb = i_own
                else:
                    sva = sa[i, blk]
                    iva = ia[i, blk]
                    svb = sb[j, blk]
                    ivb = ib[j, blk]
                for p in range(n_p):
                    patch = S2[p]
                    sig = scale * patch + b2
                    own = o_sig * sig + (o_patch * patch + o_one)
                    th = t_scale * T2[p] + own
                    rho = (iva[p] * ivb[p]) * sig
                    rho = min(max(rho, -1.0), 1.0)
                    if abs(rho) > snap:
                        rho = math.copysign(1.0, rho)
                    sin = math.sqrt((1.0 - rho) * (1.0 + rho))
                    dot = acos_rational(rho) * (-factor) + c1
                    S[p] = (sva[p] * svb[p]) * (sin * factor + rho * dot)
                    T[p] = th * dot
                for p in range(n_p):
                    sum_s += S[p]
                    sum_t += T[p]
            if want_ntk:
                has_theta = True
            Ho = geo[blk, _HO]
            Wo = geo[blk, _WO]
            if geo[blk, _POOL] != 0:
                # AvgPool of both pixel indices over independent windows
                inv = 1.0 / float((ph * pw) * (ph * pw))
                WWo = Wo * Wo
                WW = Wc * Wc
                for H in range(Ho):
                    for H2 in range(Ho):
                        for Wd in range(Wo):
                            for Wd2 in range(Wo):
                                acc_s = 0.0
                                acc_t = 0.0
                                for u in range(ph):
                                    for u2 in range(ph):
                                        plane = ((H * ph + u) * Hc + H2 * ph + u2) * WW
                                        for v in range(pw):
                                            row = plane + (Wd * pw + v) * Wc + Wd2 * pw
                                            for v2 in range(pw):
                                                acc_s += S[row + v2]
                                                if want_ntk:
                                                    acc_t += T[row + v2]
                                k = (H * Ho + H2) * WWo + Wd * Wo + Wd2
                                S2[k] = acc_s * inv
                                T2[k] = acc_t * inv
                S, S2 = S2, S
                T, T2 = T2, T
            k_out = geo[blk, _COLLECT]
            if k_out >= 0:
                n_pix = Ho * Wo
                if not fuse_sum:
                    sum_s = 0.0
                    sum_t = 0.0
                    if not full:
                        for p in range(n_pix):
                            sum_s += S[p]
                            if want_ntk:
                                sum_t += T[p]
                    elif gap:
                        for k in range(n_pix * n_pix):
                            sum_s += S[k]
                            if want_ntk:
                                sum_t += T[k]
                    else:
                        for h in range(Ho):
                            for w in range(Wo):
                                k = (h * Ho + h) * Wo * Wo + w * Wo + w
                                sum_s += S[k]
                                if want_ntk:
                                    sum_t += T[k]
                count = float(n_pix * n_pix) if gap else float(n_pix)
                s_r = sum_s / count
                nngp = wvar * s_r + b2
                nngp_out[t, k_out] = nngp
                if want_ntk:
                    t_r = sum_t / count
                    if ntk_par:
                        ntk_out[t, k_out] = nngp + wvar * t_r
                    else:
                        ntk_out[t, k_out] = nin[blk] * s_r + wvar * t_r + bias_one
            if full and geo[blk, _FULL_NEXT] == 0 and blk + 1 < depth:
                # only the diagonal pixel pairs matter from here on
                for h in range(Ho):
                    for w in range(Wo):
                        k = (h * Ho + h) * Wo * Wo + w * Wo + w
                        S2[h * Wo + w] = S[k]
                        T2[h * Wo + w] = T[k]
                S, S2 = S2, S
                T, T2 = T2, T
                full = False


def _jit(numba):
    numba.extending.register_jitable(inline="always")(acos_rational)
    numba.extending.register_jitable(_tile_stds)
    numba.extending.register_jitable(_shift_sum)
    a3c, a1c, a1i = "float64[:, :, ::1]", "float64[::1]", "int64[::1]"
    signature = (
        f"void({a3c}, {a3c}, {a1i}, {a1i}, boolean, boolean, int64[:, ::1], "
        f"{a1i}, {a1c}, {a1c}, {a1c}, {a1c}, {a3c}, {a3c}, {a3c}, {a3c}, {a3c}, "
        "float64[:, ::1], float64[:, ::1])"
    )
    options = dict(nogil=True, error_model="numpy", fastmath={"contract"})
    with warnings.catch_warnings():
        # numba's internal "pedantic" IR check on the inlined arccos: not a
        # problem of the compiled code, and nothing a user can act on
        warning = getattr(numba.errors, "NumbaIRAssumptionWarning", None)
        if warning is not None:
            warnings.simplefilter("ignore", warning)
        try:
            return numba.njit(signature, cache=True, **options)(conv_pairs)
        except RuntimeError:  # nowhere to write numba's cache: compile here
            return numba.njit(signature, **options)(conv_pairs)


#: The compiled :func:`conv_pairs`: ``compiled_conv()`` is the kernel, or
#: ``None`` without numba.
compiled_conv = LazyJit(_jit, "convolutional ReLU-family kernel")


def run_pairs(
    kernel, A, B, rows, cols, self_mode, want_ntk, setup, stds, n_out, threads
):
    """Run ``kernel`` on the pairs ``(rows, cols)`` in ``threads`` threads.

    ``setup`` is ``(geo, ints, par, tols, cin, nin)``; ``stds`` is
    ``(sa, ia, sb, ib)`` (ignored in ``self_mode``). Returns ``(nngp, ntk,
    q)``: arrays ``(m, n_out)`` and, in ``self_mode``, ``(m, depth, Pmax)``.
    """
    geo = setup[0]
    m = rows.shape[0]
    depth = geo.shape[0]
    p_max = int(max(geo[0, _HC] * geo[0, _WC], 1))
    nngp = np.zeros((m, n_out))
    ntk = np.zeros((m, n_out)) if want_ntk else np.zeros((0, n_out))
    q = np.zeros((m, depth, p_max)) if self_mode else np.zeros((0, depth, p_max))
    if m == 0:
        return nngp, ntk, q
    empty = np.zeros((1, 1, 1))
    # the kernel's signature wants writeable C arrays (read-only memmaps)
    A = np.require(A, np.float64, ["C", "W"])
    B = np.require(B, np.float64, ["C", "W"])
    sa, ia, sb, ib = (empty,) * 4 if self_mode else stds
    B = A if self_mode else B

    def chunk(t0, t1):
        kernel(
            A, B, rows[t0:t1], cols[t0:t1], self_mode, want_ntk, *setup, sa, ia, sb, ib,
            q[t0:t1] if self_mode else q, nngp[t0:t1], ntk[t0:t1] if want_ntk else ntk,
        )  # fmt: skip

    threads = max(1, min(threads, m))
    if threads == 1:
        chunk(0, m)
        return nngp, ntk, q
    # a few chunks per thread: even when the pairs' costs differ
    n_chunks = min(m, 4 * threads)
    bounds = np.linspace(0, m, n_chunks + 1).astype(np.int64)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [
            pool.submit(chunk, int(bounds[c]), int(bounds[c + 1]))
            for c in range(n_chunks)
            if bounds[c + 1] > bounds[c]
        ]
        for f in futures:
            f.result()
    return nngp, ntk, q
