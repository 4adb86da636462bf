"""ggml's quantizers (ggml-quants.c) in numba: llama.cpp's bytes, many groups at a time.

What ``llama_model_quantize`` writes is ``ggml_quantize_chunk``'s output, and that is,
per type, one of two quantizers: without an importance matrix ``quantize_row_<type>_ref``
(the numpy reference of each type reproduces it), with one ``quantize_row_<type>_impl``,
which weights every weight's error by the matrix column's importance (and, for most
types, by how large the weight is next to its row or super-block).  Q8_0, F16 and BF16
have no second form; IQ4_NL has only the second, the importance being optional.

Each quantizer searches every group of weights (a 16- or 32-weight sub-block, or a
32-weight block) for its best scale: ggml's make_qx_quants, make_q3_quants,
make_qkx2_quants / make_qkx3_quants (one search: ``make_qkx_quants``) and the
IQ4_NL table fit.  ggml runs the groups one after the other; here the groups of a
super-block (or 8 blocks of a row) run side by side in the lanes of jit.py's vectors,
lane g holding group g.  Each lane performs ggml's own float32 operations in ggml's
order, so the bytes are ggml's; the branches of ggml's search (keep this scale if it is
better) become lane masks.  The layout of a group set in memory is transposed for that:

    X[i * G + g] = weight i of group g      (float32, n * G)
    W[i * G + g] = its importance           (what ggml calls weights or quant_weights)
    L[i * G + g] = its level                (int32)

The per-super-block steps around the searches (packing scales, requantizing with the
rounded scales, packing bits) follow ggml's C line by line, in ggml's names.

    quantize_rows(kind, bf16, W (N, K), imatrix (K,) or (0,), out (N, row_bytes), finite (N,))

runs the type's row quantizer over the rows in parallel; ``imatrix`` is the importance
of each column (size 0: none).  W holds float32 rows, or rows as a file stores them
(F16 or BF16 bits), each decoded just before it is quantized: ``pyggml quantize``
reads a float model once.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .jit import (announce_compile, convert, f16_to_f32, f32_to_f16, nearest_int, splat, vabs, vany, vload, vmax,
                  vmin, vnearest_int, vselect, vsqrt, vstore)
from .floats_numba import decode
from .legacy_numba import KVALUES_IQ4NL
from .q8 import quantize_rows_q8_0_q8_1

f32 = np.float32
QK_K = 256
GROUP_MAX_EPS = f32(1e-15)             # ggml: a group whose largest |x| is below is all zero

Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = (int(GGMLType.Q4_0), int(GGMLType.Q4_1), int(GGMLType.Q5_0),
                                int(GGMLType.Q5_1), int(GGMLType.Q8_0))
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (int(GGMLType.Q2_K), int(GGMLType.Q3_K), int(GGMLType.Q4_K),
                                int(GGMLType.Q5_K), int(GGMLType.Q6_K))
IQ4_NL = int(GGMLType.IQ4_NL)


# ---------------------------------------------------------------------- group searches

@njit(inline="always")
def signed_max(X, n, G):
    """Per lane, ggml's scan ``if (ax > amax) { amax = ax; max = x; }``: the weight of
    largest |x| with its sign (the first on ties, +0 for a group of zeros), and amax."""
    amax = splat(f32(0), G)
    max_x = amax
    for i in range(n):
        x = vload(X, i * G, G)
        larger = vabs(x) > amax
        amax = vselect(larger, vabs(x), amax)
        max_x = vselect(larger, x, max_x)
    return max_x, amax


@njit(inline="always")
def symmetric_sums(X, W, n, G, iscale, nmax):
    """For the levels l = clamp(nearest_int(iscale * x), -nmax, nmax - 1): sum w x l and
    sum w l^2 in ggml's order ((w*x)*l, (w*l)*l)."""
    sumlx = splat(f32(0), G)
    suml2 = sumlx
    for i in range(n):
        x = vload(X, i * G, G)
        w = vload(W, i * G, G)
        l = convert(vmax(splat(np.int32(-nmax), G), vmin(splat(np.int32(nmax - 1), G),
                                                          vnearest_int(iscale * x))), np.float32)
        sumlx = sumlx + w * x * l
        suml2 = suml2 + w * l * l
    return sumlx, suml2


@njit(inline="always")
def store_symmetric_levels(X, L, n, G, iscale, nmax, take):
    """L = clamp(nearest_int(iscale * x), -nmax, nmax - 1) + nmax in the lanes of take."""
    for i in range(n):
        l = vmax(splat(np.int32(-nmax), G), vmin(splat(np.int32(nmax - 1), G),
                                                  vnearest_int(iscale * vload(X, i * G, G))))
        vstore(L, i * G, vselect(take, l + np.int32(nmax), vload(L, i * G, G)))


@njit(inline="always")
def make_qx_quants(X, W, L, n, G, nmax):
    """ggml's make_qx_quants(n, nmax, x, L, rmse_type=1, weights) on G groups: the scale
    of each group, L its levels + nmax in 0..2 nmax - 1.

    Starts from iscale = -nmax / max (max: the weight of largest |x|), then tries
    -(nmax + 0.1 is) / max for is = -9..9 and keeps the levels of the best weighted
    least-squares fit (the largest sumlx^2 / suml2).  (W: the caller's weights; ggml
    uses x^2 where it is given none, and the caller passes those.)"""
    zero = splat(f32(0), G)
    max_x, amax = signed_max(X, n, G)
    empty = amax < GROUP_MAX_EPS                      # ggml returns 0, all levels 0
    max_x = vselect(empty, splat(f32(1), G), max_x)   # (keeps the empty lanes finite)
    iscale = splat(f32(-nmax), G) / max_x
    store_symmetric_levels(X, L, n, G, iscale, nmax, zero == zero)   # (a mask of every lane)
    sumlx, suml2 = symmetric_sums(X, W, n, G, iscale, nmax)
    scale = vselect(suml2 != zero, sumlx / suml2, zero)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = splat(-(f32(nmax) + f32(0.1) * f32(step)), G) / max_x
        sumlx, suml2 = symmetric_sums(X, W, n, G, iscale, nmax)
        better = (suml2 > zero) & (sumlx * sumlx > best * suml2)
        if vany(better):
            store_symmetric_levels(X, L, n, G, iscale, nmax, better)
            scale = vselect(better, sumlx / suml2, scale)
            best = vselect(better, scale * sumlx, best)
    if vany(empty):
        for i in range(n):
            vstore(L, i * G, vselect(empty, splat(np.int32(0), G), vload(L, i * G, G)))
    return vselect(empty, zero, scale)


@njit(inline="always")
def make_q3_quants(X, L, n, G, nmax):
    """ggml's make_q3_quants(n, nmax, x, L, do_rmse=true) on G groups (Q3_K without an
    importance matrix): levels from iscale = -nmax / max, then up to 5 passes of
    coordinate descent with weights x^2, each weight in turn moving to the level best
    for the others' current fit when that raises sumlx^2 / suml2.  Returns the scale;
    L gets the levels + nmax.  A lane whose pass changed nothing would change nothing
    in a further pass, so lanes run on until no lane changes (ggml stops each group)."""
    zero = splat(f32(0), G)
    low, high = splat(np.int32(-nmax), G), splat(np.int32(nmax - 1), G)
    max_x, amax = signed_max(X, n, G)
    empty = amax < GROUP_MAX_EPS
    iscale = splat(f32(-nmax), G) / vselect(empty, splat(f32(1), G), max_x)
    sumlx = zero
    suml2 = zero
    for i in range(n):
        x = vload(X, i * G, G)
        l = vmax(low, vmin(high, vnearest_int(iscale * x)))
        vstore(L, i * G, l)
        w = x * x
        sumlx = sumlx + w * x * convert(l, np.float32)
        suml2 = suml2 + w * convert(l, np.float32) * convert(l, np.float32)
    for _ in range(5):
        changed = zero != zero                        # (a mask of no lane)
        for i in range(n):
            x = vload(X, i * G, G)
            w = x * x
            old = vload(L, i * G, G)
            l_old = convert(old, np.float32)
            slx_without = sumlx - w * x * l_old
            sl2_without = suml2 - w * l_old * l_old
            new = vmax(low, vmin(high, vnearest_int(x * sl2_without / slx_without)))
            l_new = convert(new, np.float32)
            slx = slx_without + w * x * l_new
            sl2 = sl2_without + w * l_new * l_new
            take = ((slx_without > zero) & (new != old) & (sl2 > zero)
                    & (slx * slx * suml2 > sumlx * sumlx * sl2))
            vstore(L, i * G, vselect(take, new, old))
            sumlx = vselect(take, slx, sumlx)
            suml2 = vselect(take, sl2, suml2)
            changed = changed | take
        if not vany(changed):
            break
    for i in range(n):
        vstore(L, i * G, vselect(empty, splat(np.int32(0), G), vload(L, i * G, G) + np.int32(nmax)))
    return vselect(empty, zero, vselect(suml2 > zero, sumlx / suml2, zero))


@njit(inline="always")
def affine_levels(X, n, G, i, iscale, min_x, nmax):
    """Level of weight i of each group: clamp(nearest_int(iscale * (x - min)), 0, nmax)."""
    return vmax(splat(np.int32(0), G), vmin(splat(np.int32(nmax), G),
                                            vnearest_int(iscale * (vload(X, i * G, G) - min_x))))


@njit(inline="always")
def affine_error(X, W, Lv, n, G, scale, min_x, use_mad):
    """sum w * |scale * l + min - x| (use_mad) or w * (scale * l + min - x)^2."""
    error = splat(f32(0), G)
    for i in range(n):
        diff = scale * convert(vload(Lv, i * G, G), np.float32) + min_x - vload(X, i * G, G)
        diff = vabs(diff) if use_mad else diff * diff
        error = error + vload(W, i * G, G) * diff
    return error


@njit(inline="always")
def make_qkx_quants(X, W, L, Laux, n, G, nmax, rmin, rdelta, nstep, use_mad):
    """ggml's make_qkx2_quants and make_qkx3_quants (the same search: qkx3 only accepts
    NULL weights, meaning x^2, which callers here pass explicitly) on G groups.

    The best affine fit x ~ scale * l - the_min with l in 0..nmax: min = min(x, 0) and
    scale = (max - min) / nmax to start, then for is = 0..nstep the levels of iscale =
    (rmin + rdelta is + nmax) / (max - min), the weighted least-squares (scale, min)
    for those levels (min clamped to 0 and scale refit if it comes out positive), kept
    if its weighted error (|diff| with use_mad, else diff^2) is lower.  Every step
    measures from the min kept so far.  Returns (scale, the_min = -min); L the levels."""
    zero = splat(f32(0), G)
    min_x = vload(X, 0, G)
    max_x = min_x
    sum_w = vload(W, 0, G)
    sum_x = sum_w * min_x
    for i in range(1, n):
        x = vload(X, i * G, G)
        w = vload(W, i * G, G)
        min_x = vselect(x < min_x, x, min_x)
        max_x = vselect(x > max_x, x, max_x)
        sum_w = sum_w + w
        sum_x = sum_x + w * x
    min_x = vselect(min_x > zero, zero, min_x)
    flat = max_x == min_x                           # ggml: levels 0, scale 0, the_min -min
    varied = max_x != min_x
    one = splat(f32(1), G)
    iscale = splat(f32(nmax), G) / vselect(flat, one, max_x - min_x)
    scale = one / iscale
    for i in range(n):
        vstore(L, i * G, affine_levels(X, n, G, i, iscale, min_x, nmax))
    best_error = affine_error(X, W, L, n, G, scale, min_x, use_mad)
    for step in range(nstep + 1):
        iscale = splat(rmin + rdelta * f32(step) + f32(nmax), G) / vselect(flat, one, max_x - min_x)
        sum_l = zero
        sum_l2 = zero
        sum_xl = zero
        for i in range(n):
            l = affine_levels(X, n, G, i, iscale, min_x, nmax)
            vstore(Laux, i * G, l)
            w = vload(W, i * G, G)
            fl = convert(l, np.float32)
            sum_l = sum_l + w * fl
            sum_l2 = sum_l2 + w * fl * fl
            sum_xl = sum_xl + w * fl * vload(X, i * G, G)
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
        positive = this_min > zero
        this_scale = vselect(positive, sum_xl / sum_l2, this_scale)
        this_min = vselect(positive, zero, this_min)
        error = affine_error(X, W, Laux, n, G, this_scale, this_min, use_mad)
        better = varied & (D > zero) & (error < best_error)
        if vany(better):
            for i in range(n):
                vstore(L, i * G, vselect(better, vload(Laux, i * G, G), vload(L, i * G, G)))
            best_error = vselect(better, error, best_error)
            scale = vselect(better, this_scale, scale)
            min_x = vselect(better, this_min, min_x)
    if vany(flat):
        for i in range(n):
            vstore(L, i * G, vselect(flat, splat(np.int32(0), G), vload(L, i * G, G)))
    return vselect(flat, zero, scale), min_x * f32(-1)     # -min, exactly (-0 for +0)


@njit(inline="always")
def make_qp_quants(n, nmax, x, L, quant_weights):
    """ggml's make_qp_quants: levels 0..nmax for the n >= 0 values x (a super-block's
    sub-block scales or mins) with weights quant_weights, by a scale search over
    (nmax + 0.1 is) / max, is = -4..4, then coordinate descent.  One group: scalar code.
    L is uint8, like ggml's, which keeps the low byte of what it is given."""
    max_x = f32(0)
    for i in range(n):
        max_x = max_x if max_x > x[i] else x[i]      # MAX(max, x[i])
    if max_x < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return f32(0)
    iscale = f32(nmax) / max_x
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = f32(1) / iscale
    best_mse = f32(0)
    for i in range(n):
        diff = x[i] - scale * f32(L[i])
        best_mse += quant_weights[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (f32(0.1) * f32(step) + f32(nmax)) / max_x
        scale_is = f32(1) / iscale_is
        mse = f32(0)
        for i in range(n):
            diff = x[i] - scale_is * f32(min(nmax, nearest_int(iscale_is * x[i])))
            mse += quant_weights[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = f32(0)
    suml2 = f32(0)
    for i in range(n):
        l = min(nmax, nearest_int(iscale * x[i]))
        L[i] = l & 0xFF
        w = quant_weights[i]
        sumlx += w * x[i] * f32(l)
        suml2 += w * f32(l) * f32(l)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = quant_weights[i]
            slx = sumlx - w * x[i] * f32(L[i])
            sl2 = suml2 - w * f32(L[i]) * f32(L[i])
            if slx > 0 and sl2 > 0:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    slx += w * x[i] * f32(new_l)
                    sl2 += w * f32(new_l) * f32(new_l)
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else f32(0)


@njit(inline="always")
def best_index_iq4_nl(x, G):
    """ggml's best_index_int8(16, kvalues_iq4nl, x) per lane, and the table value it
    picks: the nearest value, the upper one on a tie.  ggml bisects; here lane by lane,
    lower = the largest value <= x (from the second on), upper = the next one, which is
    the same pair (the first and last values come out of the same comparison)."""
    lower = splat(f32(KVALUES_IQ4NL[0]), G)
    upper = splat(f32(KVALUES_IQ4NL[15]), G)
    index = splat(np.int32(0), G)
    for k in range(1, 15):
        below = x >= f32(KVALUES_IQ4NL[k])
        lower = vselect(below, splat(f32(KVALUES_IQ4NL[k]), G), lower)
        index = vselect(below, splat(np.int32(k), G), index)
    for k in range(14, 0, -1):
        upper = vselect(x < f32(KVALUES_IQ4NL[k]), splat(f32(KVALUES_IQ4NL[k]), G), upper)
    nearer_lower = x - lower < upper - x
    return vselect(nearer_lower, index, index + np.int32(1)), vselect(nearer_lower, lower, upper)


@njit(inline="always")
def iq4_nl_sums(X, W, n, G, iscale):
    """sum w q x and sum w q^2 for the table values q nearest to iscale * x."""
    sumqx = splat(f32(0), G)
    sumq2 = sumqx
    for i in range(n):
        x = vload(X, i * G, G)
        w = vload(W, i * G, G)
        q = best_index_iq4_nl(iscale * x, G)[1]
        sumqx = sumqx + w * q * x
        sumq2 = sumq2 + w * q * q
    return sumqx, sumq2


@njit(inline="always")
def fit_iq4_nl(X, W, n, G, ntry):
    """The scale search of ggml's quantize_row_iq4_nl_impl for one block per lane: d =
    max / 127 (the extreme weight on the extreme value -127), its least-squares refit,
    then iscale = (itry - 127) / max for itry = -ntry..ntry, keeping the best fit."""
    zero = splat(f32(0), G)
    max_x, amax = signed_max(X, n, G)
    empty = amax < GROUP_MAX_EPS                            # ggml: scale 0
    max_x = vselect(empty, splat(f32(1), G), max_x)
    d = (zero - max_x) / f32(KVALUES_IQ4NL[0])
    sumqx, sumq2 = iq4_nl_sums(X, W, n, G, splat(f32(1), G) / d)
    d = vselect(sumq2 > zero, sumqx / sumq2, zero)
    best = d * sumqx
    for itry in range(-ntry, ntry + 1):
        sumqx, sumq2 = iq4_nl_sums(X, W, n, G, splat(f32(itry + KVALUES_IQ4NL[0]), G) / max_x)
        better = (sumq2 > zero) & (sumqx * sumqx > best * sumq2)
        d = vselect(better, sumqx / sumq2, d)
        best = vselect(better, d * sumqx, best)
    return vselect(empty, zero, d)


# ---------------------------------------------------------------------- group sets

@njit(inline="always")
def gather(x, start, n, G, X):
    """X[i * G + g] = x[start + n * g + i]: G consecutive groups of n, transposed."""
    for g in range(G):
        for i in range(n):
            X[i * G + g] = x[start + n * g + i]


@njit(inline="always")
def row_sigma2(x):
    """sum x^2 / len(x) over a whole row, as the legacy types' quantize_row_*_impl."""
    sum_x2 = f32(0)
    for j in range(x.size):
        sum_x2 += x[j] * x[j]
    return sum_x2 / f32(x.size)


@njit(inline="always")
def importance(X, qw, start, n, G, sigma2, W):
    """ggml's weights with an importance matrix: qw[j] * sqrtf(sigma2 + x[j]^2) for
    the G groups of n columns from start (X transposed, as gather leaves it)."""
    for g in range(G):
        for i in range(n):
            x = X[i * G + g]
            W[i * G + g] = qw[start + n * g + i] * np.sqrt(sigma2 + x * x)


@njit(inline="always")
def sub_block_sums(W, n, G, sums):
    """sums[g] = sum of the weights of group g, in ggml's order."""
    for g in range(G):
        total = f32(0)
        for i in range(n):
            total += W[i * G + g]
        sums[g] = total


@njit(inline="always")
def put_fp16(y, o, value):
    """Store GGML_FP32_TO_FP16(value) at byte o of y; return the float32 it reads back as."""
    h = f32_to_f16(value)
    y[o] = h & 0xFF
    y[o + 1] = h >> 8
    return f16_to_f32(h)


# ---------------------------------------------------------------------- legacy types

@njit(cache=True, inline="always")
def signed_absmax_32(x, start):
    """The value of largest magnitude among x[start:start + 32], sign kept (the first of
    equal magnitudes), as Q4_0 and Q5_0 scale by it."""
    amax = f32(0)
    max_x = f32(0)
    for j in range(32):
        v = x[start + j]
        if amax < abs(v):
            amax = abs(v)
            max_x = v
    return max_x


@njit(cache=True)
def quantize_row_q4_0_ref(x, y):
    """quantize_row_q4_0_ref: d = max / -8, q = MIN(15, (int8_t)(x / d + 8.5))."""
    for b in range(x.size // 32):
        max_x = signed_absmax_32(x, 32 * b)
        d = max_x / f32(-8)
        inv = f32(1) / d if d != 0 else f32(0)
        o = 18 * b
        put_fp16(y, o, d)
        for j in range(16):
            q0 = min(15, np.int8(np.int32(x[32 * b + j] * inv + f32(8.5))))
            q1 = min(15, np.int8(np.int32(x[32 * b + 16 + j] * inv + f32(8.5))))
            y[o + 2 + j] = q0 | (q1 << 4)


@njit(cache=True)
def quantize_row_q5_0_ref(x, y):
    """quantize_row_q5_0_ref: d = max / -16, q = MIN(31, (int8_t)(x / d + 16.5))."""
    for b in range(x.size // 32):
        max_x = signed_absmax_32(x, 32 * b)
        d = max_x / f32(-16)
        inv = f32(1) / d if d != 0 else f32(0)
        o = 22 * b
        put_fp16(y, o, d)
        qh = np.uint32(0)
        for j in range(16):
            q0 = min(31, np.int8(np.int32(x[32 * b + j] * inv + f32(16.5))))
            q1 = min(31, np.int8(np.int32(x[32 * b + 16 + j] * inv + f32(16.5))))
            y[o + 6 + j] = (q0 & 15) | ((q1 & 15) << 4)
            qh |= np.uint32((q0 & 0x10) >> 4) << np.uint32(j)
            qh |= np.uint32((q1 & 0x10) >> 4) << np.uint32(j + 16)
        for k in range(4):
            y[o + 2 + k] = (qh >> np.uint32(8 * k)) & 0xFF


@njit(cache=True)
def quantize_row_q4_1_q5_1_ref(x, y, nmax):
    """quantize_row_q4_1_ref (nmax 15) and quantize_row_q5_1_ref (31): m = min, d =
    (max - min) / nmax, q = (uint8_t)((x - min) / d + 0.5) (MIN(15, .) for Q4_1)."""
    size = 20 if nmax == 15 else 24
    for b in range(x.size // 32):
        lo = f32(np.inf)                 # FLT_MAX / -FLT_MAX in ggml: the same for finite x
        hi = f32(-np.inf)
        for j in range(32):
            v = x[32 * b + j]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        d = (hi - lo) / f32(nmax)
        inv = f32(1) / d if d != 0 else f32(0)
        o = size * b
        put_fp16(y, o, d)
        put_fp16(y, o + 2, lo)
        qh = np.uint32(0)
        for j in range(16):
            q0 = np.uint8(np.int32((x[32 * b + j] - lo) * inv + f32(0.5)))
            q1 = np.uint8(np.int32((x[32 * b + 16 + j] - lo) * inv + f32(0.5)))
            if nmax == 15:
                y[o + 4 + j] = min(np.uint8(15), q0) | (min(np.uint8(15), q1) << 4)
            else:
                y[o + 8 + j] = (q0 & 15) | ((q1 & 15) << 4)
                qh |= np.uint32((q0 & 0x10) >> 4) << np.uint32(j)
                qh |= np.uint32((q1 & 0x10) >> 4) << np.uint32(j + 16)
        if nmax == 31:
            for k in range(4):
                y[o + 4 + k] = (qh >> np.uint32(8 * k)) & 0xFF


@njit(inline="always")
def pack_legacy(L, G, g, y, o, five_bits):
    """Block g of a group set: its 32 levels into qs (and the fifth bits into qh at o)."""
    qh = np.uint32(0)
    qs = o + 4 if five_bits else o
    for j in range(16):
        q0 = L[j * G + g]
        q1 = L[(j + 16) * G + g]
        y[qs + j] = (q0 & 15) | ((q1 & 15) << 4)
        qh |= np.uint32((q0 & 0x10) >> 4) << np.uint32(j)
        qh |= np.uint32((q1 & 0x10) >> 4) << np.uint32(j + 16)
    if five_bits:
        for k in range(4):
            y[o + k] = (qh >> np.uint32(8 * k)) & 0xFF


@njit(cache=True)
def quantize_row_legacy_impl(kind, x, qw, y):
    """quantize_row_q4_0_impl, q4_1, q5_0, q5_1 with an importance matrix: per 32-block,
    weights qw * sqrtf(sigma2 + x^2) (sigma2: the row's mean x^2), then make_qx_quants
    (Q4_0: nmax 8, Q5_0: 16) or make_qkx3_quants (Q4_1: 15, Q5_1: 31; m = -the_min).
    Eight blocks at a time; a row's last set is padded with empty blocks."""
    G = 8
    affine = kind == Q4_1 or kind == Q5_1
    five_bits = kind == Q5_0 or kind == Q5_1
    size = 18 if kind == Q4_0 else 20 if kind == Q4_1 else 22 if kind == Q5_0 else 24
    nmax = 8 if kind == Q4_0 else 15 if kind == Q4_1 else 16 if kind == Q5_0 else 31
    n_blocks = x.size // 32
    sigma2 = row_sigma2(x)
    X = np.zeros(32 * G, np.float32)
    W = np.zeros(32 * G, np.float32)
    L = np.empty(32 * G, np.int32)
    Laux = np.empty(32 * G, np.int32)
    padded_x = np.zeros(32 * G, np.float32)
    padded_qw = np.zeros(32 * G, np.float32)
    for first in range(0, n_blocks, G):
        count = min(G, n_blocks - first)
        padded_x[:] = 0
        padded_qw[:] = 0
        padded_x[:32 * count] = x[32 * first:32 * (first + count)]
        padded_qw[:32 * count] = qw[32 * first:32 * (first + count)]
        gather(padded_x, 0, 32, G, X)
        importance(X, padded_qw, 0, 32, G, sigma2, W)
        if affine:
            d, the_min = make_qkx_quants(X, W, L, Laux, 32, G, nmax, f32(-0.9), f32(0.05), 36, False)
        else:
            d = make_qx_quants(X, W, L, 32, G, nmax)
            the_min = d
        for g in range(count):
            o = size * (first + g)
            put_fp16(y, o, d[g])
            if affine:
                put_fp16(y, o + 2, -the_min[g])
            pack_legacy(L, G, g, y, o + (4 if affine else 2), five_bits)


# ---------------------------------------------------------------------- IQ4_NL

@njit(cache=True)
def quantize_row_iq4_nl(x, qw, y):
    """quantize_iq4_nl (quantize_row_iq4_nl_impl with one 32-block per super-block,
    ntry 7): weights x^2, or qw * sqrtf(sigma2 + x^2) with sigma2 = 2 sum x^2 / 32;
    fit_iq4_nl's scale, then each weight's nearest table value for x * (1/d).
    Eight blocks at a time; a row's last set is padded with empty blocks."""
    G = 8
    n_blocks = x.size // 32
    X = np.zeros(32 * G, np.float32)
    W = np.zeros(32 * G, np.float32)
    for first in range(0, n_blocks, G):
        count = min(G, n_blocks - first)
        X[:] = 0
        for g in range(count):
            start = 32 * (first + g)
            sigma2 = f32(0)
            for i in range(32):
                v = x[start + i]
                X[i * G + g] = v
                sigma2 += v * v
            sigma2 *= f32(2) / f32(32)
            for i in range(32):
                v = X[i * G + g]
                W[i * G + g] = qw[start + i] * np.sqrt(sigma2 + v * v) if qw.size else v * v
        d = fit_iq4_nl(X, W, 32, G, 7)
        iscale = vselect(d != f32(0), splat(f32(1), G) / vselect(d != f32(0), d, splat(f32(1), G)),
                         splat(f32(0), G))
        for g in range(count):
            put_fp16(y, 18 * (first + g), d[g])
        for j in range(16):
            low = best_index_iq4_nl(iscale * vload(X, j * G, G), G)[0]
            high = best_index_iq4_nl(iscale * vload(X, (j + 16) * G, G), G)[0]
            for g in range(count):
                y[18 * (first + g) + 2 + j] = low[g] | (high[g] << 4)


# ---------------------------------------------------------------------- K-quants
# A super-block of 256 weights is G sub-blocks of n (16 x 16 or 8 x 32), gathered
# transposed: weight e of the super-block is X[(e % n) * G + e // n].

@njit(inline="always")
def level(L, n, G, e):
    """The level of weight e of a super-block whose sub-blocks are lanes."""
    return L[(e % n) * G + e // n]


@njit(inline="always")
def requantize(X, L, n, G, d, dm, low, high, offset):
    """ggml's last pass: levels again from the rounded sub-block scales, L = clamp(
    nearest_int((x + dm) / d), low, high) + offset, in the lanes whose d is not 0 (ggml
    skips the others, which keep the search's levels).  d, dm: float32 arrays (G,)."""
    d_v = vload(d, 0, G)
    dm_v = vload(dm, 0, G)
    nonzero = d_v != f32(0)
    d_v = vselect(nonzero, d_v, splat(f32(1), G))
    for i in range(n):
        l = vmax(splat(np.int32(low), G), vmin(splat(np.int32(high), G),
                                                vnearest_int((vload(X, i * G, G) + dm_v) / d_v)))
        vstore(L, i * G, vselect(nonzero, l + np.int32(offset), vload(L, i * G, G)))


@njit(inline="always")
def sum_squares(x, start, n):
    total = f32(0)
    for j in range(start, start + n):
        total += x[j] * x[j]
    return total


@njit(inline="always")
def pack_crumbs(L, y, o):
    """Q2_K/Q3_K qs (64 bytes at o) from 16 x 16 levels 0..3: byte l of 32-byte half h
    holds weights 128h + l + 32k in bits 2k."""
    for h in range(2):
        for l in range(32):
            e = 128 * h + l
            y[o + 32 * h + l] = (level(L, 16, 16, e) | (level(L, 16, 16, e + 32) << 2)
                                 | (level(L, 16, 16, e + 64) << 4) | (level(L, 16, 16, e + 96) << 6))


@njit(cache=True)
def quantize_row_q2_K(x, qw, y):
    """quantize_row_q2_K_ref / _impl, per super-block of 16 sub-blocks of 16, levels 0..3:

    ref   make_qkx2_quants(16, 3, weights |x|, -0.5, 0.1, 15, use_mad), then the
          scales and mins to 4 bits against their maxima (d = max_scale / 15)
    impl  weights qw * sqrtf(sigma2 + x^2) (sigma2 = sum x^2 / 256), make_qkx3_quants
          (-0.9, 0.05, 36), and the 4-bit scales and mins by make_qp_quants, each
          sub-block weighted by its total weight
    """
    G = 16
    X = np.empty(QK_K, np.float32)
    W = np.empty(QK_K, np.float32)
    L = np.empty(QK_K, np.int32)
    Laux = np.empty(QK_K, np.int32)
    sw = np.empty(G, np.float32)
    Ls = np.empty(G, np.uint8)
    Lm = np.empty(G, np.uint8)
    scales_byte = np.empty(G, np.uint8)
    d_sub = np.empty(G, np.float32)
    dm_sub = np.empty(G, np.float32)
    for b in range(x.size // QK_K):
        base = QK_K * b
        o = 84 * b                          # scales[16] | qs[64] | d | dmin
        gather(x, base, 16, G, X)
        if qw.size:
            importance(X, qw, base, 16, G, sum_squares(x, base, QK_K) / f32(QK_K), W)
            sub_block_sums(W, 16, G, sw)
            scales, mins = make_qkx_quants(X, W, L, Laux, 16, G, 3, f32(-0.9), f32(0.05), 36, False)
            d = put_fp16(y, o + 80, make_qp_quants(G, 15, scales, Ls, sw))
            dmin = put_fp16(y, o + 82, make_qp_quants(G, 15, mins, Lm, sw))
            for j in range(G):
                scales_byte[j] = Ls[j] | (Lm[j] << 4)
        else:
            for i in range(QK_K):
                W[i] = abs(X[i])
            scales, mins = make_qkx_quants(X, W, L, Laux, 16, G, 3, f32(-0.5), f32(0.1), 15, True)
            max_scale = f32(0)
            max_min = f32(0)
            for j in range(G):
                if scales[j] > max_scale:
                    max_scale = scales[j]
                if mins[j] > max_min:
                    max_min = mins[j]
            scales_byte[:] = 0
            d = put_fp16(y, o + 80, f32(0))
            if max_scale > 0:
                iscale = f32(15) / max_scale
                for j in range(G):
                    scales_byte[j] = nearest_int(iscale * scales[j]) & 0xFF
                d = put_fp16(y, o + 80, max_scale / f32(15))
            dmin = put_fp16(y, o + 82, f32(0))
            if max_min > 0:
                iscale = f32(15) / max_min
                for j in range(G):
                    scales_byte[j] |= (nearest_int(iscale * mins[j]) << 4) & 0xFF
                dmin = put_fp16(y, o + 82, max_min / f32(15))
        for j in range(G):
            y[o + j] = scales_byte[j]
            d_sub[j] = d * f32(scales_byte[j] & 0xF)
            dm_sub[j] = dmin * f32(scales_byte[j] >> 4)
        requantize(X, L, 16, G, d_sub, dm_sub, 0, 3, 0)
        pack_crumbs(L, y, o + 16)


@njit(cache=True)
def quantize_row_q3_K(x, qw, y):
    """quantize_row_q3_K_ref / _impl, per super-block of 16 sub-blocks of 16, levels -4..3:

    ref   make_q3_quants(16, 4, do_rmse) per sub-block, the scales to 6 bits
          against the one of largest |scale| (iscale = -32 / max_scale)
    impl  weights qw * sqrtf(sigma2 + x^2) (sigma2 = 2 sum x^2 / 256), make_qx_quants(16,
          4), the 6-bit scales by make_qx_quants(16, 32) weighted by each sub-block's
          total weight

    then levels again from the rounded scales; their third bits go to hmask (weight
    e: bit e // 32 of byte e % 32), the low two to qs.
    """
    G = 16
    X = np.empty(QK_K, np.float32)
    W = np.empty(QK_K, np.float32)
    L = np.empty(QK_K, np.int32)
    sw = np.empty(G, np.float32)
    scales_array = np.empty(G, np.float32)
    Ls = np.empty(G, np.int32)
    biased = np.empty(G, np.int32)                  # the 6-bit scales + 32
    d_sub = np.empty(G, np.float32)
    no_min = np.zeros(G, np.float32)
    for b in range(x.size // QK_K):
        base = QK_K * b
        o = 110 * b                         # hmask[32] | qs[64] | scales[12] | d
        gather(x, base, 16, G, X)
        if qw.size:
            importance(X, qw, base, 16, G, f32(2) * sum_squares(x, base, QK_K) / f32(QK_K), W)
            sub_block_sums(W, 16, G, sw)
            scales = make_qx_quants(X, W, L, 16, G, 4)
            for j in range(G):
                scales_array[j] = scales[j]
            d_block = make_qx_quants(scales_array, sw, Ls, 16, 1, 32)[0]
            for j in range(G):
                biased[j] = Ls[j]
            d = put_fp16(y, o + 108, d_block)
        else:
            scales = make_q3_quants(X, L, 16, G, 4)
            max_scale = f32(0)
            amax = f32(0)
            for j in range(G):
                if abs(scales[j]) > amax:
                    amax = abs(scales[j])
                    max_scale = scales[j]
            biased[:] = 0
            d = put_fp16(y, o + 108, f32(0))
            if max_scale != 0:
                iscale = f32(-32) / max_scale
                for j in range(G):
                    biased[j] = max(-32, min(31, np.int8(nearest_int(iscale * scales[j])))) + 32
                d = put_fp16(y, o + 108, f32(1) / iscale)
        packed = y[o + 96:o + 108]
        packed[:] = 0
        for j in range(G):
            if j < 8:
                packed[j] = biased[j] & 0xF
            else:
                packed[j - 8] |= (biased[j] & 0xF) << 4
            packed[j % 4 + 8] |= (biased[j] >> 4) << (2 * (j // 4))
        for j in range(G):                  # the scales as stored, read back
            d_sub[j] = d * f32(np.int8(biased[j] & 63) - 32)
        requantize(X, L, 16, G, d_sub, no_min, -4, 3, 4)
        y[o:o + 32] = 0
        for e in range(QK_K):
            if level(L, 16, G, e) > 3:
                y[o + e % 32] |= 1 << (e // 32)
                L[(e % 16) * G + e // 16] -= 4
        pack_crumbs(L, y, o + 32)


@njit(cache=True)
def quantize_row_k4(x, qw, y, nmax):
    """quantize_row_q4_K_ref / _impl (nmax 15) and quantize_row_q5_K_ref / _impl (31),
    per super-block of 8 sub-blocks of 32:

    ref   weights av_x + |x| (av_x: the sub-block's rms), make_qkx2_quants (Q4_K: -1,
          0.1, 20; Q5_K: -0.5, 0.1, 15), the scales and mins to 6 bits against their
          maxima (d = max_scale / 63)
    impl  weights qw * sqrtf(sigma2 + x^2) (sigma2 = 2 sum x^2 / 256), make_qkx3_quants
          (-0.9, 0.05, 36), the 6-bit scales and mins by make_qp_quants, each sub-block
          weighted by its total weight

    then levels again from the rounded scales (scale_min_k4 packing), Q4_K's as nibbles,
    Q5_K's low nibbles and fifth bits in qh.
    """
    G = 8
    X = np.empty(QK_K, np.float32)
    W = np.empty(QK_K, np.float32)
    L = np.empty(QK_K, np.int32)
    Laux = np.empty(QK_K, np.int32)
    sw = np.empty(G, np.float32)
    Ls = np.empty(G, np.uint8)
    Lm = np.empty(G, np.uint8)
    d_sub = np.empty(G, np.float32)
    dm_sub = np.empty(G, np.float32)
    size = 144 if nmax == 15 else 176
    for b in range(x.size // QK_K):
        base = QK_K * b
        o = size * b                        # d | dmin | scales[12] | (qh[32]) | qs[128]
        gather(x, base, 32, G, X)
        if qw.size:
            importance(X, qw, base, 32, G, f32(2) * sum_squares(x, base, QK_K) / f32(QK_K), W)
            sub_block_sums(W, 32, G, sw)
            scales, mins = make_qkx_quants(X, W, L, Laux, 32, G, nmax, f32(-0.9), f32(0.05), 36, False)
            d = put_fp16(y, o, make_qp_quants(G, 63, scales, Ls, sw))
            dmin = put_fp16(y, o + 2, make_qp_quants(G, 63, mins, Lm, sw))
            if nmax == 31:                  # (quantize_row_q4_K_impl has no MIN(63, .))
                for j in range(G):
                    Ls[j] = min(np.uint8(63), Ls[j])
                    Lm[j] = min(np.uint8(63), Lm[j])
        else:
            for j in range(G):
                av_x = np.sqrt(sum_squares(x, base + 32 * j, 32) / f32(32))
                for i in range(32):
                    W[i * G + j] = av_x + abs(X[i * G + j])
            if nmax == 15:
                scales, mins = make_qkx_quants(X, W, L, Laux, 32, G, 15, f32(-1), f32(0.1), 20, False)
            else:
                scales, mins = make_qkx_quants(X, W, L, Laux, 32, G, 31, f32(-0.5), f32(0.1), 15, False)
            max_scale = f32(0)
            max_min = f32(0)
            for j in range(G):
                if scales[j] > max_scale:
                    max_scale = scales[j]
                if mins[j] > max_min:
                    max_min = mins[j]
            inv_scale = f32(63) / max_scale if max_scale > 0 else f32(0)
            inv_min = f32(63) / max_min if max_min > 0 else f32(0)
            for j in range(G):
                Ls[j] = min(np.uint8(63), np.uint8(nearest_int(inv_scale * scales[j]) & 0xFF))
                Lm[j] = min(np.uint8(63), np.uint8(nearest_int(inv_min * mins[j]) & 0xFF))
            d = put_fp16(y, o, max_scale / f32(63))
            dmin = put_fp16(y, o + 2, max_min / f32(63))
        packed = y[o + 4:o + 16]            # scale_min_k4
        for j in range(G):
            if j < 4:
                packed[j] = Ls[j]
                packed[j + 4] = Lm[j]
            else:
                packed[j + 4] = (Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4)
                packed[j - 4] |= (Ls[j] >> 4) << 6
                packed[j] |= (Lm[j] >> 4) << 6
        for j in range(G):                  # get_scale_min_k4: the scales as stored
            if j < 4:
                sc, m = packed[j] & 63, packed[j + 4] & 63
            else:
                sc = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4)
                m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)
            d_sub[j] = d * f32(sc)
            dm_sub[j] = dmin * f32(m)
        requantize(X, L, 32, G, d_sub, dm_sub, 0, nmax, 0)
        if nmax == 15:
            for c in range(4):              # 32-byte chunk c: weights 64c.. low, 64c+32.. high
                for l in range(32):
                    e = 64 * c + l
                    y[o + 16 + 32 * c + l] = level(L, 32, G, e) | (level(L, 32, G, e + 32) << 4)
        else:
            y[o + 16:o + 48] = 0
            for c in range(4):
                for l in range(32):
                    e = 64 * c + l
                    low, high = level(L, 32, G, e), level(L, 32, G, e + 32)
                    y[o + 16 + l] |= ((low >> 4) << (2 * c)) | ((high >> 4) << (2 * c + 1))
                    y[o + 48 + 32 * c + l] = (low & 15) | ((high & 15) << 4)


@njit(cache=True)
def quantize_row_q6_K(x, qw, y):
    """quantize_row_q6_K_ref / _impl, per super-block of 16 sub-blocks of 16, levels
    -32..31: make_qx_quants(16, 32) with weights x^2 (ref) or qw itself (impl), the
    scales to int8 against the one of largest |scale| (iscale = -128 / max_scale), then
    levels again from the rounded scales: low nibbles in ql, high two bits in qh."""
    G = 16
    X = np.empty(QK_K, np.float32)
    W = np.empty(QK_K, np.float32)
    L = np.empty(QK_K, np.int32)
    d_sub = np.empty(G, np.float32)
    no_min = np.zeros(G, np.float32)
    for b in range(x.size // QK_K):
        base = QK_K * b
        o = 210 * b                         # ql[128] | qh[64] | scales[16] | d
        gather(x, base, 16, G, X)
        if qw.size:
            gather(qw, base, 16, G, W)
        else:
            for i in range(QK_K):
                W[i] = X[i] * X[i]
        scales = make_qx_quants(X, W, L, 16, G, 32)
        max_scale = f32(0)
        max_abs_scale = f32(0)
        for j in range(G):
            if abs(scales[j]) > max_abs_scale:
                max_abs_scale = abs(scales[j])
                max_scale = scales[j]
        if max_abs_scale < GROUP_MAX_EPS:
            y[o:o + 210] = 0
            continue
        iscale = f32(-128) / max_scale
        d = put_fp16(y, o + 208, f32(1) / iscale)
        for j in range(G):
            sc = np.int8(min(127, nearest_int(iscale * scales[j])))
            y[o + 192 + j] = np.uint8(sc & 0xFF)
            d_sub[j] = d * f32(sc)
        requantize(X, L, 16, G, d_sub, no_min, -32, 31, 32)
        for h in range(2):
            for l in range(32):
                e = 128 * h + l
                q1, q2 = level(L, 16, G, e), level(L, 16, G, e + 32)
                q3, q4 = level(L, 16, G, e + 64), level(L, 16, G, e + 96)
                y[o + 64 * h + l] = (q1 & 0xF) | ((q3 & 0xF) << 4)
                y[o + 64 * h + 32 + l] = (q2 & 0xF) | ((q4 & 0xF) << 4)
                y[o + 128 + 32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)


# ---------------------------------------------------------------------- rows in parallel

@njit(inline="always")
def quantize_row(kind, row, qw, y):
    """y = the row quantized to `kind` by ggml's quantizer of the type, with the
    importance qw (size 0: none)."""
    if kind == Q2_K:
        quantize_row_q2_K(row, qw, y)
    elif kind == Q3_K:
        quantize_row_q3_K(row, qw, y)
    elif kind == Q4_K:
        quantize_row_k4(row, qw, y, 15)
    elif kind == Q5_K:
        quantize_row_k4(row, qw, y, 31)
    elif kind == Q6_K:
        quantize_row_q6_K(row, qw, y)
    elif kind == IQ4_NL:
        quantize_row_iq4_nl(row, qw, y)
    elif qw.size:
        quantize_row_legacy_impl(kind, row, qw, y)
    elif kind == Q4_0:
        quantize_row_q4_0_ref(row, y)
    elif kind == Q5_0:
        quantize_row_q5_0_ref(row, y)
    elif kind == Q4_1:
        quantize_row_q4_1_q5_1_ref(row, y, 15)
    elif kind == Q5_1:
        quantize_row_q4_1_q5_1_ref(row, y, 31)


ROWS_PER_TASK = 16


@njit(parallel=True, cache=True)
def quantize_rows(kind, bf16, W, qw, out, finite):
    """out[r] = row r of W quantized to `kind`, with the importance qw (size 0: none).
    W (N, K) holds the rows as a file stores them: float32 (F32), or the uint16 bits of
    F16 (BF16 if bf16); K is a multiple of 16.  Each row is decoded into a buffer of its
    task just before it is quantized, so no float32 copy of W is ever made (one pass
    over the file's bytes, in cache).  Rows are independent (ggml_quantize_chunk's
    chunks are whole rows), so they run in parallel.  finite[r] = False for a row that
    holds an inf or a NaN (which ggml would quantize to garbage): it is left unwritten."""
    n_rows, k = W.shape
    n_tasks = (n_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        row = np.empty(k, f32)
        for r in range(task * ROWS_PER_TASK, min(n_rows, (task + 1) * ROWS_PER_TASK)):
            w = W[r]
            nan = splat(f32(0), 16)            # x - x is 0, or NaN for an inf or a NaN
            for i in range(0, k, 16):
                v = decode(bf16, vload(w, i, 16))
                vstore(row, i, v)
                nan = nan + (v - v)
            finite[r] = not vany(nan != nan)
            if finite[r]:
                quantize_row(kind, row, qw, out[r])


def quantize(cls, x: np.ndarray, imatrix: np.ndarray | None) -> np.ndarray:
    """float32 (N, K) -> uint8 (N, row_bytes) of the type cls (a QuantType whose kernels
    are here), with imatrix float32 (K,) or None; both arrays read-only (one compiled
    kernel for every call: numba compiles per array mutability).  (quantize() of
    pyggml.quants has checked that x is finite.)"""
    return quantize_stored(cls, None, x, imatrix)[0]


def quantize_stored(cls, src, W: np.ndarray, imatrix: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Rows stored as the float type src (F32, F16, BF16; W uint8 (N, row_bytes), or
    src None and W float32 (N, K)) -> (uint8 (N, row_bytes of cls), the first row that
    holds an inf or a NaN, or -1); cls a QuantType whose kernels are here, imatrix
    float32 (K,) or None, both read-only."""
    x = W if src is None else W.view(src.view_dtype)
    out = np.empty((x.shape[0], x.shape[1] // cls.block_size * cls.type_size), np.uint8)
    finite = np.empty(x.shape[0], np.bool_)
    qw = np.empty(0, np.float32) if imatrix is None else imatrix.view()
    qw.flags.writeable = False
    announce_compile(quantize_rows, "quantizer")
    bf16 = src is not None and src.ggml_type == GGMLType.BF16
    quantize_rows(int(cls.ggml_type), bf16, x, qw, out, finite)
    bad = np.flatnonzero(~finite)
    return out, int(bad[0]) if bad.size else -1
