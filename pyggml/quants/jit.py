"""Numba building blocks shared by every fast kernel in pyggml.quants.

Kernels take byte arrays (``uint8``) exactly as they lie in a GGUF file and read the
block fields themselves, so that nothing is copied or converted before a product.
The helpers here are the few things plain numba cannot say directly:

    fma32(a, b, c)     a * b + c in float32 with one rounding (LLVM ``llvm.fma``), as
                       ggml's kernels do with _mm256_fmadd_ps
    f16_to_f32(bits)   IEEE half -> float32 (LLVM ``fpext half``: one vcvtph2ps on x86)
    f32_to_f16(x)      float32 -> IEEE half bits, round to nearest even (``fptrunc``)
    bits_to_f32(u)     uint32 bits -> float32 (a bfloat16 is the top half of these bits)
    f32_to_bits(x)     float32 -> its bits as int32
    u16(w, o)          little-endian uint16 at byte offset o of a uint8 array
    u32(w, o)          little-endian uint32 at byte offset o
    nearest_int(x)     ggml's nearest_int bit for bit (round half to even up to 2^22), int32
    round_away(x)      C's roundf: halves away from zero (np.rint rounds them to even)

Vectors: ``Vector(dtype, n)`` is an LLVM vector <n x dtype> as a numba value, and the
functions in the "vectors" section below are the few instructions ggml's AVX2 kernels are
written in (load, splat, lane-wise arithmetic, widen, vpmaddubsw, vpmaddwd, fma, ...).
The kernels use them where LLVM's loop vectorizer does not find those instructions by
itself from scalar loops -- which is most of the time: numba widens every integer to
int64, cannot tell LLVM that an output array does not alias an input, and lets LLVM
unroll small loops fully, after which the SLP pass rarely rebuilds vectors.  Written with
vectors, each 32-weight step of a kernel is the handful of instructions ggml uses.  On a
CPU with AVX2 the integer multiply-adds are ggml's own instructions (the LLVM x86
intrinsics); elsewhere the same arithmetic is spelt out in generic LLVM IR.

Compilation: every kernel is ``@njit(cache=True)``, compiled lazily on first use and
then loaded from numba's on-disk cache.  ``announce_compile`` prints a one-line notice
the first time a kernel has to be compiled on this machine, so that a pause of a few
seconds on a first run is explained.  numba's cache checks the source file of each
kernel, not this module's helpers inlined into it: after editing this file, delete
pyggml/quants/__pycache__/*.nbi and *.nbc.

Integer arithmetic note: numba widens int32 arithmetic to int64.  Scalar code wraps sums
in ``np.int32(...)`` to keep 32-bit arithmetic; vector lanes keep their own type.
"""
from __future__ import annotations

import math
import operator
import os
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, models, overload, register_model


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 a * b + c rounded once (a fused multiply-add on any CPU: LLVM falls back
    to libm's fmaf where there is no FMA instruction)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fma, args)
    return sig, codegen


def _conversion(result, arg, emit):
    """An intrinsic result(arg) whose code is emit(builder, value): LLVM casts."""
    @intrinsic
    def conversion(typingctx, value):
        def codegen(context, builder, signature, args):
            return emit(builder, args[0])
        return result(arg), codegen
    return conversion


# IEEE binary16 bits (uint16) -> float32, exactly (every half is a float32)
f16_to_f32 = _conversion(types.float32, types.uint16,
                         lambda builder, v: builder.fpext(builder.bitcast(v, ir.HalfType()), ir.FloatType()))
# float32 -> IEEE binary16 bits (uint16), rounded to nearest even like ggml's fp32_to_fp16
f32_to_f16 = _conversion(types.uint16, types.float32,
                         lambda builder, v: builder.bitcast(builder.fptrunc(v, ir.HalfType()), ir.IntType(16)))
# uint32 bits -> the float32 they are (C: memcpy)
bits_to_f32 = _conversion(types.float32, types.uint32, lambda builder, v: builder.bitcast(v, ir.FloatType()))
# float32 -> its bits as int32 (C: memcpy)
f32_to_bits = _conversion(types.int32, types.float32,
                          lambda builder, v: builder.bitcast(v, ir.IntType(32)))


@njit(inline="always")
def u16(w, o):
    """Little-endian uint16 at byte offset o of the uint8 array w."""
    return np.uint16(w[o]) | (np.uint16(w[o + 1]) << np.uint16(8))


@njit(inline="always")
def u32(w, o):
    """Little-endian uint32 at byte offset o of the uint8 array w."""
    return (np.uint32(w[o]) | (np.uint32(w[o + 1]) << np.uint32(8))
            | (np.uint32(w[o + 2]) << np.uint32(16)) | (np.uint32(w[o + 3]) << np.uint32(24)))


@njit(inline="always")
def f16(w, o):
    """The fp16 field at byte offset o of w, as float32."""
    return f16_to_f32(u16(w, o))


@njit(inline="always")
def nearest_int(x):
    """ggml's nearest_int bit for bit (the 1.5*2^23 magic-number trick): round half to
    even for |x| <= 2^22, ggml's garbage beyond, which its quantizers reach (base.nearest_int)."""
    bits = f32_to_bits(np.float32(x) + np.float32(12582912))
    return np.int32((bits & np.int32(0x7FFFFF)) - np.int32(0x400000))


@njit(inline="always")
def round_away(x):
    """C roundf(x) for a float32 x: exact in float64, where x + 0.5 cannot round."""
    v = np.float64(x)
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@njit(inline="always")
def hsum8(a):
    """The float32 sum of a[0..7] as ggml's hsum_float_8 pairs them (arch/x86/quants.c):
    the two halves added, then pairs, then the last two."""
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))


# ---------------------------------------------------------------------- vectors

def _target_features() -> set[str]:
    """The CPU features numba compiles for: NUMBA_CPU_FEATURES if set, else the host's."""
    features = numba.config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
    return {f[1:] for f in features.split(",") if f.startswith("+")}


HAS_AVX2 = "avx2" in _target_features()
HAS_AVX512BW = "avx512bw" in _target_features()


def _host_is_amd() -> bool:
    """Whether this is an AMD CPU (/proc/cpuinfo's vendor, else LLVM's name for the CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    from llvmlite import binding
    return binding.get_host_cpu_name().startswith("znver")


# llama.cpp adds the odd last block of IQ4_NL's vec_dot in a scalar loop, `sumf += d * sum`
# (and Q2_0's generic vec_dot its blocks): GCC (-march=native) compiles it to one FMA except
# on AMD Zen, whose tuning avoids FMA chains in loops of one basic block (a chain in a loop
# that holds other loops, as IQ1_S's and the TQ types', is fused there too).  Same rule as
# kernels/cpu_internal.h's add_scalar_tail.  (A constant of the compiled kernels: numba's
# cache keys them by the CPU anyway.)
GGML_FUSES_SCALAR_TAIL = not _host_is_amd()


class Vector(types.Type):
    """<count x dtype> in registers: a vector value inside compiled kernels (never a
    Python object).  Made by vload, splat and the operations below."""

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        super().__init__(name=f"Vector({dtype}, {count})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane_type = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(lane_type, fe_type.count))


def _literal(t):
    return t.literal_value if isinstance(t, types.IntegerLiteral) else None


def _mask(indices):
    return ir.Constant(ir.VectorType(ir.IntType(32), len(indices)), list(indices))


def _shuffle(builder, v, indices, other=None):
    return builder.shuffle_vector(v, other if other is not None else ir.Constant(v.type, ir.Undefined),
                                  _mask(indices))


def _splat_ir(builder, vty, value):
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return _shuffle(builder, one, [0] * vty.count)


def _llvm_call(builder, name, result, args):
    fnty = ir.FunctionType(result, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)


def _suffix(vty):
    """LLVM's overloaded-intrinsic suffix of a vector type: v8f32, v16i16, ..."""
    e = vty.element
    return f"v{vty.count}" + (f"i{e.width}" if isinstance(e, ir.IntType) else "f32")


def _row_pointer(context, builder, arrty, array, offset, vty):
    data = context.make_array(arrty)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())


@intrinsic
def vload(typingctx, a, offset, count):
    """a[offset:offset + count] of a 1-D array as a Vector (no alignment needed; count
    must be a literal number)."""
    n = _literal(count)
    if not (isinstance(a, types.Array) and a.ndim == 1 and n):
        return None
    result = Vector(a.dtype, n)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(result)
        return builder.load(_row_pointer(context, builder, sig.args[0], args[0], args[1], vty),
                            align=1, typ=vty)
    return result(a, offset, count), codegen


@intrinsic
def vstore(typingctx, a, offset, v):
    """a[offset:offset + len(v)] = v."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(v, Vector) and a.dtype == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(v)
        builder.store(args[2], _row_pointer(context, builder, sig.args[0], args[0], args[1], vty), align=1)
        return context.get_dummy_value()
    return types.none(a, offset, v), codegen


@intrinsic
def splat(typingctx, x, count):
    """count copies of the scalar x (of x's own type: np.int16(3), np.float32(d))."""
    n = _literal(count)
    if not (isinstance(x, types.Number) and n):
        return None
    result = Vector(x, n)

    def codegen(context, builder, sig, args):
        return _splat_ir(builder, context.get_value_type(result), args[0])
    return result(x, count), codegen


def _lanewise(name):
    @intrinsic
    def op(typingctx, a, b):
        if not isinstance(a, Vector) or not (b == a or isinstance(b, types.Number)):
            return None
        if name == "div" and not isinstance(a.dtype, types.Float):
            return None

        def codegen(context, builder, sig, args):
            x, y = args
            if not isinstance(sig.args[1], Vector):          # a scalar: every lane
                y = _splat_ir(builder, x.type, context.cast(builder, y, sig.args[1], a.dtype))
            if isinstance(a.dtype, types.Float):
                return {"add": builder.fadd, "sub": builder.fsub, "mul": builder.fmul,
                        "div": builder.fdiv}[name](x, y)
            # (lane masks, Vector(boolean), take the logical operations: & | ^)
            shift_right = builder.ashr if getattr(a.dtype, "signed", False) else builder.lshr
            return {"add": builder.add, "sub": builder.sub, "mul": builder.mul, "and": builder.and_,
                    "or": builder.or_, "xor": builder.xor, "shl": builder.shl,
                    "shr": shift_right}[name](x, y)
        return a(a, b), codegen
    return op


def _overload_operator(op, implementation):
    @overload(op)
    def _(a, b):
        if isinstance(a, Vector):
            return lambda a, b: implementation(a, b)


for _op, _name in ((operator.add, "add"), (operator.sub, "sub"), (operator.mul, "mul"),
                   (operator.truediv, "div"),
                   (operator.and_, "and"), (operator.or_, "or"), (operator.xor, "xor"),
                   (operator.lshift, "shl"),
                   (operator.rshift, "shr")):
    _overload_operator(_op, _lanewise(_name))


@intrinsic
def _extract(typingctx, v, i):
    if not (isinstance(v, Vector) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])
    return v.dtype(v, i), codegen


@overload(operator.getitem)
def _getitem(v, i):
    """v[i]: lane i as a scalar."""
    if isinstance(v, Vector) and isinstance(i, types.Integer):
        return lambda v, i: _extract(v, i)


@intrinsic
def convert(typingctx, v, dtype):
    """Lane by lane to dtype (np.int16, np.float32, ...): integers widen by their own
    signedness or are truncated; integers to float exactly as C converts them."""
    if not (isinstance(v, Vector) and isinstance(dtype, types.NumberClass)):
        return None
    to = dtype.instance_type
    result = Vector(to, v.count)

    def codegen(context, builder, sig, args):
        x, src, out = args[0], v.dtype, context.get_value_type(result)
        if isinstance(to, types.Float):
            if isinstance(src, types.Float):
                return builder.fpext(x, out) if to.bitwidth > src.bitwidth else builder.fptrunc(x, out)
            return builder.sitofp(x, out) if src.signed else builder.uitofp(x, out)
        if to.bitwidth > src.bitwidth:
            return builder.sext(x, out) if src.signed else builder.zext(x, out)
        return builder.trunc(x, out) if to.bitwidth < src.bitwidth else x
    return result(v, dtype), codegen


@intrinsic
def bitcast(typingctx, v, dtype):
    """The same bits as lanes of dtype (4 x uint32 -> 16 x uint8, uint8 -> int8, ...)."""
    if not (isinstance(v, Vector) and isinstance(dtype, types.NumberClass)):
        return None
    to = dtype.instance_type
    result = Vector(to, v.count * v.dtype.bitwidth // to.bitwidth)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(result))
    return result(v, dtype), codegen


@intrinsic
def part(typingctx, v, start, count):
    """Lanes start .. start + count - 1 (literal numbers)."""
    s, n = _literal(start), _literal(count)
    if not (isinstance(v, Vector) and s is not None and n):
        return None
    result = Vector(v.dtype, n)

    def codegen(context, builder, sig, args):
        return _shuffle(builder, args[0], range(s, s + n))
    return result(v, start, count), codegen


@intrinsic
def concat(typingctx, a, b):
    """a's lanes, then b's."""
    if not (isinstance(a, Vector) and a == b):
        return None
    result = Vector(a.dtype, 2 * a.count)

    def codegen(context, builder, sig, args):
        return _shuffle(builder, args[0], range(2 * a.count), args[1])
    return result(a, b), codegen


@intrinsic
def repeat(typingctx, v, times):
    """Each lane `times` times in a row: repeat([a, b], 4) = [a, a, a, a, b, b, b, b]."""
    k = _literal(times)
    if not (isinstance(v, Vector) and k):
        return None
    result = Vector(v.dtype, v.count * k)

    def codegen(context, builder, sig, args):
        return _shuffle(builder, args[0], [i // k for i in range(v.count * k)])
    return result(v, times), codegen


@intrinsic
def nonzero(typingctx, v):
    """1 in the lanes of v that are not 0, 0 elsewhere (same lane type)."""
    if not (isinstance(v, Vector) and isinstance(v.dtype, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        return builder.zext(builder.icmp_unsigned("!=", args[0], zero), args[0].type)
    return v(v), codegen


def _pairs(builder, x):
    """The even and the odd lanes of x."""
    n = x.type.count
    return _shuffle(builder, x, range(0, n, 2)), _shuffle(builder, x, range(1, n, 2))


def _halves(builder, x):
    n = x.type.count
    return _shuffle(builder, x, range(n // 2)), _shuffle(builder, x, range(n // 2, n))


def _x86_pairs(builder, args, name256, name512, result):
    """An x86 pair instruction on 32-byte vectors, or on 64-byte ones (one AVX-512 BW
    instruction, else two AVX2 ones)."""
    width = args[0].type.count * args[0].type.element.width
    if width == 512 and HAS_AVX512BW:
        return _llvm_call(builder, name512, result, args)
    if width == 512:
        half = ir.VectorType(result.element, result.count // 2)
        low = _llvm_call(builder, name256, half, [_halves(builder, a)[0] for a in args])
        high = _llvm_call(builder, name256, half, [_halves(builder, a)[1] for a in args])
        return _shuffle(builder, low, range(result.count), high)
    return _llvm_call(builder, name256, result, args)


@intrinsic
def maddubs(typingctx, a, b):
    """vpmaddubsw: uint8 lanes times int8 lanes, each pair of neighbouring products summed
    into an int16 lane (saturated at +-32767, as the instruction does; the kernels keep
    their operands small enough never to reach it: a uint8 below 64 times an int8).
    32 or 64 lanes (AVX-512: one instruction for 64)."""
    if not (isinstance(a, Vector) and isinstance(b, Vector) and a.count == b.count
            and a.dtype == types.uint8 and b.dtype == types.int8):
        return None
    result = Vector(types.int16, a.count // 2)

    def codegen(context, builder, sig, args):
        i16 = ir.VectorType(ir.IntType(16), a.count // 2)
        if HAS_AVX2 and a.count in (32, 64):
            return _x86_pairs(builder, args, "llvm.x86.avx2.pmadd.ub.sw",
                              "llvm.x86.avx512.pmaddubs.w.512", i16)
        i32 = ir.VectorType(ir.IntType(32), a.count // 2)
        (ae, ao), (be, bo) = _pairs(builder, args[0]), _pairs(builder, args[1])
        total = builder.add(builder.mul(builder.zext(ae, i32), builder.sext(be, i32)),
                            builder.mul(builder.zext(ao, i32), builder.sext(bo, i32)))
        high = _splat_ir(builder, i32, ir.Constant(ir.IntType(32), 32767))
        low = _splat_ir(builder, i32, ir.Constant(ir.IntType(32), -32768))
        total = builder.select(builder.icmp_signed("<", total, high), total, high)
        total = builder.select(builder.icmp_signed(">", total, low), total, low)
        return builder.trunc(total, i16)
    return result(a, b), codegen


@intrinsic
def madd(typingctx, a, b):
    """vpmaddwd: int16 lanes times int16 lanes, each pair of neighbouring products summed
    into an int32 lane (exact).  8, 16 or 32 lanes; with AVX-512 VNNI, LLVM fuses
    madd + add into vpdpwssd."""
    if not (isinstance(a, Vector) and a == b and a.dtype == types.int16):
        return None
    result = Vector(types.int32, a.count // 2)

    def codegen(context, builder, sig, args):
        i32 = ir.VectorType(ir.IntType(32), a.count // 2)
        if HAS_AVX2 and a.count == 8:
            return _llvm_call(builder, "llvm.x86.sse2.pmadd.wd", i32, args)
        if HAS_AVX2 and a.count in (16, 32):
            return _x86_pairs(builder, args, "llvm.x86.avx2.pmadd.wd", "llvm.x86.avx512.pmaddw.d.512", i32)
        (ae, ao), (be, bo) = _pairs(builder, args[0]), _pairs(builder, args[1])
        return builder.add(builder.mul(builder.sext(ae, i32), builder.sext(be, i32)),
                           builder.mul(builder.sext(ao, i32), builder.sext(bo, i32)))
    return result(a, b), codegen


@intrinsic
def lookup16(typingctx, table, index):
    """vpshufb with a 16-entry table: lane i of the result is table[index[i]] (index
    lanes 0..15; 32 lanes)."""
    if not (isinstance(table, Vector) and table.count == 16 and table.dtype.bitwidth == 8
            and isinstance(index, Vector) and index.count == 32 and index.dtype == types.uint8):
        return None
    result = Vector(table.dtype, 32)

    def codegen(context, builder, sig, args):
        t, idx = args
        if HAS_AVX2:
            b32 = ir.VectorType(ir.IntType(8), 32)
            both = _shuffle(builder, t, list(range(16)) * 2)           # the table in both halves
            return _llvm_call(builder, "llvm.x86.avx2.pshuf.b", b32, [both, idx])
        out = ir.Constant(ir.VectorType(ir.IntType(8), 32), ir.Undefined)
        for i in range(32):
            lane_index = builder.extract_element(idx, ir.Constant(ir.IntType(32), i))
            out = builder.insert_element(out, builder.extract_element(t, lane_index),
                                         ir.Constant(ir.IntType(32), i))
        return out
    return result(table, index), codegen


@intrinsic
def from_tuple(typingctx, values):
    """A Vector of the scalars of a homogeneous tuple: from_tuple((a, b, c, d))."""
    if not isinstance(values, types.UniTuple):
        return None
    result = Vector(values.dtype, values.count)

    def codegen(context, builder, sig, args):
        out = ir.Constant(context.get_value_type(result), ir.Undefined)
        for i in range(values.count):
            out = builder.insert_element(out, builder.extract_value(args[0], i),
                                         ir.Constant(ir.IntType(32), i))
        return out
    return result(values), codegen


@intrinsic
def add_pairs(typingctx, v):
    """Lane i of the result is v[2i] + v[2i + 1] (half as many lanes)."""
    if not (isinstance(v, Vector) and isinstance(v.dtype, types.Integer)):
        return None
    result = Vector(v.dtype, v.count // 2)

    def codegen(context, builder, sig, args):
        even, odd = _pairs(builder, args[0])
        return builder.add(even, odd)
    return result(v), codegen


@intrinsic
def hsum(typingctx, v):
    """The sum of the integer lanes of v (wrapping like C's int arithmetic)."""
    if not (isinstance(v, Vector) and isinstance(v.dtype, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _llvm_call(builder, f"llvm.vector.reduce.add.{_suffix(args[0].type)}",
                          args[0].type.element, args)
    return v.dtype(v), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane by lane with one rounding (_mm256_fmadd_ps)."""
    if not (isinstance(a, Vector) and a == b == c and isinstance(a.dtype, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        return _llvm_call(builder, f"llvm.fma.{_suffix(args[0].type)}", args[0].type, args)
    return a(a, b, c), codegen


@intrinsic
def halves_to_f32(typingctx, v):
    """uint16 lanes holding IEEE halves -> float32 lanes (vcvtph2ps)."""
    if not (isinstance(v, Vector) and v.dtype == types.uint16):
        return None
    result = Vector(types.float32, v.count)

    def codegen(context, builder, sig, args):
        halves = builder.bitcast(args[0], ir.VectorType(ir.HalfType(), v.count))
        return builder.fpext(halves, ir.VectorType(ir.FloatType(), v.count))
    return result(v), codegen


# ---------------------------------------------------------------------- lanes of groups
# The quantizers (quantize_numba.py) search every group of weights (a block, a sub-block)
# for its best scale, and ggml searches one group after the other.  Here lane g of a
# Vector holds group g: each lane runs ggml's own sequence of float32 operations on its
# group, so every group gets ggml's bits while 8 or 16 groups share each instruction.
# ggml's branches become lane masks: a comparison of two Vectors (a < b, a == b, ...) is
# a Vector(boolean) that & | ^ combine, and vselect picks lane by lane.

_COMPARISONS = {operator.lt: "<", operator.gt: ">", operator.le: "<=", operator.ge: ">=",
                operator.eq: "==", operator.ne: "!="}


def _comparison(symbol):
    @intrinsic
    def compare(typingctx, a, b):
        if not (isinstance(a, Vector) and isinstance(a.dtype, (types.Float, types.Integer))
                and (b == a or isinstance(b, types.Number))):
            return None
        result = Vector(types.boolean, a.count)

        def codegen(context, builder, sig, args):
            x, y = args
            if not isinstance(sig.args[1], Vector):
                y = _splat_ir(builder, x.type, context.cast(builder, y, sig.args[1], a.dtype))
            if isinstance(a.dtype, types.Float):      # C's: false with a NaN, but != true
                if symbol == "!=":
                    return builder.fcmp_unordered(symbol, x, y)
                return builder.fcmp_ordered(symbol, x, y)
            if a.dtype.signed:
                return builder.icmp_signed(symbol, x, y)
            return builder.icmp_unsigned(symbol, x, y)
        return result(a, b), codegen
    return compare


for _op, _symbol in _COMPARISONS.items():
    _overload_operator(_op, _comparison(_symbol))


@intrinsic
def vselect(typingctx, mask, a, b):
    """Lane by lane, a where mask is true, else b (C's mask ? a : b)."""
    if not (isinstance(mask, Vector) and mask.dtype == types.boolean and isinstance(a, Vector)
            and a == b and a.count == mask.count):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(*args)
    return a(mask, a, b), codegen


@intrinsic
def vany(typingctx, mask):
    """Whether any lane of the mask is true."""
    if not (isinstance(mask, Vector) and mask.dtype == types.boolean):
        return None

    def codegen(context, builder, sig, args):
        return _llvm_call(builder, f"llvm.vector.reduce.or.v{mask.count}i1", ir.IntType(1), args)
    return types.boolean(mask), codegen


def _float_function(llvm_name):
    @intrinsic
    def function(typingctx, v):
        if not (isinstance(v, Vector) and isinstance(v.dtype, types.Float)):
            return None

        def codegen(context, builder, sig, args):
            return _llvm_call(builder, f"llvm.{llvm_name}.{_suffix(args[0].type)}", args[0].type, args)
        return v(v), codegen
    return function


vabs = _float_function("fabs")       # fabsf lane by lane
vsqrt = _float_function("sqrt")      # sqrtf lane by lane (correctly rounded, as C's)


@njit(inline="always")
def vmin(a, b):
    """ggml's MIN(a, b) lane by lane: ((a) < (b) ? (a) : (b))."""
    return vselect(a < b, a, b)


@njit(inline="always")
def vmax(a, b):
    """ggml's MAX(a, b) lane by lane: ((a) > (b) ? (a) : (b))."""
    return vselect(a > b, a, b)


@intrinsic
def vnearest_int(typingctx, v):
    """ggml's nearest_int lane by lane, float32 -> int32, the way ggml computes it: the
    low 23 bits of x + 1.5 * 2^23 (round half to even for |x| < 2^22, and for larger or
    non-finite x the same bits as ggml's, where a float-to-int conversion would differ)."""
    if not (isinstance(v, Vector) and v.dtype == types.float32):
        return None
    result = Vector(types.int32, v.count)

    def codegen(context, builder, sig, args):
        i32 = ir.VectorType(ir.IntType(32), v.count)
        magic = _splat_ir(builder, args[0].type, ir.Constant(ir.FloatType(), 12582912.0))
        bits = builder.bitcast(builder.fadd(args[0], magic), i32)
        low = builder.and_(bits, _splat_ir(builder, i32, ir.Constant(ir.IntType(32), 0x007FFFFF)))
        return builder.sub(low, _splat_ir(builder, i32, ir.Constant(ir.IntType(32), 0x00400000)))
    return result(v), codegen


# The float orders of llama.cpp's CPU kernels (kernels/ggml_order.c explains each and says
# which one ggml takes when; order() picks it as llama.cpp's AVX-512 x86 build does)
VEC_DOT, TINYBLAS, GEMV, GEMM, TILED = range(5)
_REPACKED = (2, 20, 12, 10, 39)        # Q4_0, IQ4_NL, Q4_K, Q2_K, MXFP4: interleaved at load
# the types llama.cpp's tiled matmul (tiled/tiled.cpp) takes: Q2_K .. Q6_K, IQ2_XXS,
# IQ2_XS, IQ3_XXS, IQ1_S, IQ3_S, IQ2_S, IQ4_XS, IQ1_M
_TILED_TYPES = (10, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 29)
_Q0_TYPES = (2, 6, 8, 20)              # Q4_0, Q5_0, Q8_0, IQ4_NL: tinyBLAS for prompts


@njit(inline="always")
def order(kind, n_rows, n_act, t):
    """The order of activation row t of a product of n_act rows with a matrix of n_rows
    rows of ggml type `kind`: repacked matrices (rows % 8 == 0) take rows 4 at a time
    (GEMM) and the last n_act % 4 alone (GEMV); other K-quants and the i-quants of 256
    the tiled matmul from 8 rows; other Q4_0 Q5_0 Q8_0 IQ4_NL tinyBLAS from 2; everything
    else vec_dot."""
    if kind in _REPACKED and n_rows % 8 == 0:
        return GEMM if t < n_act - n_act % 4 else GEMV
    if kind in _TILED_TYPES and n_act >= 8:
        return TILED
    if kind in _Q0_TYPES and n_act >= 2:
        return TINYBLAS
    return VEC_DOT


# Rows of the weight matrix handled by one parallel work item in the products: enough
# to amortize the scheduling, few enough that a 2-thread machine still splits small
# matrices (a 128-row K/V projection is 8 work items).
ROWS_PER_TASK = 16


_announced: set[str] = set()


def announce_compile(kernel, label: str) -> None:
    """Print a notice before ``kernel`` is compiled for the first time on this machine.

    numba keeps compiled kernels on disk (``cache=True``); only when no cache index
    exists yet is the compilation (seconds per kernel family) about to happen.
    """
    if label in _announced:
        return
    _announced.add(label)
    try:
        index = kernel._cache._cache_file._index_path      # numba internals; best effort
    except AttributeError:
        return
    if not os.path.exists(index):
        print(f"pyggml: compiling the {label} kernels with numba "
              "(first run on this machine only; cached afterwards)", file=sys.stderr)
