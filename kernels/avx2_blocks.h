/* avx2_blocks.h -- ggml blocks into AVX2 registers: the unpacking shared by the dot
 * product kernels (quants_avx2.c) and the panel products (panels_avx2.c): horizontal
 * sums, integer dot products of bytes, nibbles and bit planes to bytes, scale
 * broadcasts, the quants of a 32-element block (Q4_0 ... IQ4_NL, MXFP4), Q4_K/Q5_K's
 * scale_min_k4 and Q3_K's q3_K_scales for all sub-blocks at once, and the quants of a
 * 32-element slice of Q2_K, Q3_K and Q6_K.
 *
 * Only included where __AVX2__ is defined.  Every function is always inlined, so
 * that shifts and masks by constant amounts fold into single instructions. */
#ifndef PYGGML_AVX2_BLOCKS_H
#define PYGGML_AVX2_BLOCKS_H

#include "cpu_internal.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

/* activation row r of rows `stride` bytes apart, as blocks of `type` */
#define ACT_ROW(type, act, stride, r) ((const type *)((const char *)(act) + (r) * (stride)))

/* ---------------------------------------------------------------- helpers */

/* ggml's hsum_float_8 (arch/x86/quants.c): halves added, then pairs, then the two */
INLINE float hsum_float_8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the sum of 8 or 4 int32 lanes (wrapping, like any order of vpaddd) */
INLINE int32_t hsum_epi32_4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
    return _mm_cvtsi128_si32(v);
}
INLINE int32_t hsum_epi32(__m256i v) {
    return hsum_epi32_4(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/* The VNNI dot products: AVX512-VNNI's form where there is one (the compiler may then
 * take all 32 vector registers, and either encoding), else AVX-VNNI's VEX one */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define HAVE_VNNI 1
INLINE __m256i vnni_dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
INLINE __m256i vnni_dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
#elif defined(__AVXVNNI__)
#define HAVE_VNNI 1
INLINE __m256i vnni_dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
INLINE __m256i vnni_dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_avx_epi32(acc, a, b); }
#endif

/* ZMM_LANES: the lanes of Q4_K (two sub-blocks) and Q6_K (two slices) per zmm
 * (quants_avx2.c, lanes_k4 and lanes_k16) where the compiler tunes for AMD Zen 4 or 5
 * (-march=native defines __znverN__; GCC 12 calls both znver3): they run 512-bit integer
 * instructions at the rate of 256-bit ones.  On a Zen 5 the one-row products in L2 went
 * from 6.5 to 4.5 ns per super-block (Q4_K) and from 5.8 to 4.2 (Q6_K).  Sapphire Rapids
 * multiplies 512-bit integers on one port only: a zmm form measured slower there
 * (docs/performance.md).  -DPYGGML_ZMM_LANES=0 or 1 overrides the choice. */
#if defined(__znver3__) || defined(__znver4__) || defined(__znver5__)
#define TUNED_FOR_ZEN 1         /* -march=native on AMD Zen 3 to 5 (GCC 12: znver3 for all) */
#endif
#ifndef PYGGML_ZMM_LANES
#ifdef TUNED_FOR_ZEN
#define PYGGML_ZMM_LANES 1
#else
#define PYGGML_ZMM_LANES 0
#endif
#endif
#if PYGGML_ZMM_LANES && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VBMI__)
#define ZMM_LANES 1
#endif

#ifdef ZMM_LANES
/* 32 bytes twice (a zmm broadcast) -> their low nibbles in the lower half, their high
 * nibbles in the upper, as bytes 0..15 */
INLINE __m512i nibbles_by_half(__m512i twice) {
#ifdef __GFNI__
    /* one instruction: a GF(2) affine map per 64-bit lane, out bit i = the parity of
     * (matrix byte 7-i AND the byte): bytes 7..4 = 1 << (i + 0 or 4) pick bit i or i+4 */
    const __m512i pick = _mm512_inserti64x4(_mm512_set1_epi64(0x0102040800000000LL),
                                            _mm256_set1_epi64x(0x1020408000000000LL), 1);
    return _mm512_gf2p8affine_epi64_epi8(twice, pick, 0);
#else
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(twice, shift), _mm512_set1_epi8(0x0F));
#endif
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VL__)
#define HAVE_BYTE_MASKS 1      /* AVX512-BW's mask registers, on 256-bit vectors (AVX512-VL) */
#endif

/* 8 x int32, lane i = sum of the products of bytes 4i..4i+3 (u unsigned, s signed) */
INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
#ifdef HAVE_VNNI
    return vnni_dpbusd(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* acc + 8 lanes of 2 int16 products each (wrapping: the same bits as vpmaddwd then vpaddd) */
INLINE __m256i dot_i16_acc(__m256i acc, __m256i a, __m256i b) {
#ifdef HAVE_VNNI
    return vnni_dpwssd(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* 16 packed bytes -> 32 nibbles in element order: low nibbles (0..15), high (16..31) */
INLINE __m256i nibbles_32(const uint8_t *qs) {
    /* the 16 bytes in both halves by the load itself, the high half shifted: no lane
     * insert (a shuffle-port uop, the port decode's unpacking is short of) */
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i v = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* the 32 bits of a little-endian u32 -> 32 bytes, 0xFF where the bit is set */
INLINE __m256i bits_32(const uint8_t *qh) {
    uint32_t u;
    memcpy(&u, qh, 4);
    const __m256i byte_of_bit = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                  0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), byte_of_bit);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* an fp16 at any byte address */
INLINE float fp16_at(const void *p) {
    ggml_half h;
    memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

/* ---------------------------------------------------------------- 32-element blocks
 * The 32 quants of a block in element order, one register. */

INLINE __m256i quants_q4_0(const block_q4_0 *b) {
    return _mm256_sub_epi8(nibbles_32(b->qs), _mm256_set1_epi8(8));
}
INLINE __m256i quants_q4_1(const block_q4_1 *b) { return nibbles_32(b->qs); }
/* Q5_0: q - 16, i.e. nibble - 16 where the 5th bit is clear; Q5_1: nibble + 16 where it is
 * set.  With AVX512-BW the 32 bits of qh are a mask register as they are (a kmov, then one
 * masked byte add) where AVX2 spreads them to bytes first (bits_32: 4 more uops) */
#ifdef HAVE_BYTE_MASKS
INLINE __mmask32 mask_32(const uint8_t *qh) {
    uint32_t u;
    memcpy(&u, qh, 4);
    return (__mmask32)u;
}
INLINE __m256i quants_q5_0(const block_q5_0 *b) {
    const __m256i nibbles = nibbles_32(b->qs);
    return _mm256_mask_sub_epi8(nibbles, ~mask_32(b->qh), nibbles, _mm256_set1_epi8(16));
}
INLINE __m256i quants_q5_1(const block_q5_1 *b) {
    const __m256i nibbles = nibbles_32(b->qs);
    return _mm256_mask_add_epi8(nibbles, mask_32(b->qh), nibbles, _mm256_set1_epi8(16));
}
#else
INLINE __m256i quants_q5_0(const block_q5_0 *b) {       /* nibble - 16: the nibble with 0xF0 or'ed in */
    return _mm256_or_si256(nibbles_32(b->qs), _mm256_andnot_si256(bits_32(b->qh), _mm256_set1_epi8((char)0xF0)));
}
INLINE __m256i quants_q5_1(const block_q5_1 *b) {
    return _mm256_or_si256(nibbles_32(b->qs), _mm256_and_si256(bits_32(b->qh), _mm256_set1_epi8(0x10)));
}
#endif
INLINE __m256i quants_q8_0(const block_q8_0 *b) { return _mm256_loadu_si256((const __m256i *)b->qs); }
INLINE __m256i quants_iq4_nl(const block_iq4_nl *b) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    return _mm256_shuffle_epi8(table, nibbles_32(b->qs));
}

/* MXFP4: IQ4_NL's packing, the doubled E2M1 values (kvalues_mxfp4) as the table */
INLINE __m256i quants_mxfp4(const block_mxfp4 *b) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_mxfp4));
    return _mm256_shuffle_epi8(table, nibbles_32(b->qs));
}

/* the 32 quants of a block in element order: signed, or unsigned where has_m(type) */
INLINE __m256i quants_32(const int type, const void *block) {
    switch (type) {
    case GGML_TYPE_Q4_0: return quants_q4_0(block);
    case GGML_TYPE_Q4_1: return quants_q4_1(block);
    case GGML_TYPE_Q5_0: return quants_q5_0(block);
    case GGML_TYPE_Q5_1: return quants_q5_1(block);
    case GGML_TYPE_Q8_0: return quants_q8_0(block);
    case GGML_TYPE_MXFP4: return quants_mxfp4(block);
    default: return quants_iq4_nl(block);
    }
}

/* lanes[r]: block i against block i of activation row r */

/* bits of every byte moved from position `from` to `to` by one 16-bit shift; the caller
 * masks them (the shift also pulls in bits of the neighbouring byte) */
INLINE __m256i move_bits(__m256i v, int from, int to) {
    return from >= to ? _mm256_srli_epi16(v, from - to) : _mm256_slli_epi16(v, to - from);
}

/* int16 x 16 = [s[a] x 8, s[a+1] x 8] for even a: the scales of the two 16-element groups
 * of one 32-byte slice, from half = [s[8i..8i+7] | s[8i..8i+7]] (i = a / 8): one shuffle */
INLINE __m256i pair_scales(__m256i half, int a) {
    const int e = a % 8;
    return _mm256_shuffle_epi8(half, _mm256_set_m128i(_mm_set1_epi16((short)((2 * e + 3) << 8 | (2 * e + 2))),
                                                      _mm_set1_epi16((short)((2 * e + 1) << 8 | (2 * e)))));
}

/* Decode streams each weight row from memory once, at a few instructions per byte: the
 * out-of-order window then holds too few loads to cover memory latency, and the
 * hardware prefetcher alone leaves bandwidth unused.  So the kernels that serve one
 * activation row ask for the lines of the block PREFETCH_BYTES ahead into L1, and on
 * Intel also PREFETCH_L2_BYTES ahead into L2: the hardware prefetchers stop at every
 * 4 KiB page boundary, and where the weights are the 4 KiB pages of a mapped file the
 * far request takes the page walk and most of the memory latency out of the way
 * (Sapphire Rapids, docs/performance.md: +25% on the 1.5B Q4_K_M model's matrices as
 * views of the file, 2-4% less on huge pages).  On a Zen 5 one request 6 KiB ahead
 * beat both (a 1-thread 1.5B Q4_K_M token 31.0 -> 29.0 ms with the file in 2 MiB pages,
 * 32.6 -> 31.6 ms in 4 KiB pages; 4-16 KiB ahead alike, 1 KiB 12% slower): half the
 * prefetch instructions, and far enough ahead alone. */
#ifndef PREFETCH_BYTES                 /* (a -D for experiments; PREFETCH_L2_BYTES 0: none) */
#ifdef TUNED_FOR_ZEN
#define PREFETCH_BYTES 6144
#define PREFETCH_L2_BYTES 0
#else
#define PREFETCH_BYTES 2048
#define PREFETCH_L2_BYTES 8192
#endif
#endif
#ifndef PREFETCH_L2_BYTES
#define PREFETCH_L2_BYTES 0
#endif
INLINE void prefetch_ahead(const void *block, size_t block_bytes) {
    for (size_t o = 0; o < block_bytes; o += 64) {
        _mm_prefetch((const char *)block + PREFETCH_BYTES + o, _MM_HINT_T0);
        if (PREFETCH_L2_BYTES) _mm_prefetch((const char *)block + PREFETCH_L2_BYTES + o, _MM_HINT_T2);
    }
}

/* the 8 sub-block scales of a super-block, int32 lane j = its int16 scale twice, in
 * memory: a sub-block takes its scale by a broadcast load (vpbroadcastd from memory: a
 * load-port uop) instead of a shuffle on the ports the unpacking is short of */
typedef struct {
    int32_t pair[QK_K / 32];
} block_scales;

/* non-negative int32 lanes below 2^15 -> the value in both int16 halves */
INLINE __m256i int16_pairs(__m256i v) { return _mm256_or_si256(v, _mm256_slli_epi32(v, 16)); }

INLINE void store_block_scales(block_scales *sc, __m256i pairs) {
    _mm256_storeu_si256((__m256i *)sc->pair, pairs);
    /* read back from memory: otherwise GCC takes each lane out of the register (a shift or
     * an align, then a broadcast: two shuffle-port uops per sub-block) */
    __asm__("" : "+m"(*sc));
}

/* int16 x 16, every lane the scale of sub-block j */
INLINE __m256i scale_of(const block_scales *sc, int j) { return _mm256_set1_epi32(sc->pair[j]); }

/* ---------------------------------------------------------------- K-quant fields */

/* ggml's get_scale_min_k4 for all 8 sub-blocks at once: the 12 scale bytes of Q4_K or
 * Q5_K (layout in quants_ref.c, scale_min_k4) -> sc[0..7] (bytes 0..7), m[0..7] (8..15) */
INLINE __m128i scale_min_k4(const uint8_t *scales) {
    /* bytes b0..b11 (the 16-byte load also takes 4 bytes of what follows in the block):
     *   sc 0..3 = b0..3 & 63          sc 4..7 = (b8..11 & 15) | (b0..3 >> 6) << 4
     *   m 0..3  = b4..7 & 63          m 4..7  = (b8..11 >> 4) | (b4..7 >> 6) << 4
     * in eight vector instructions (the scalar form took some thirty per block) */
    const __m128i b = _mm_loadu_si128((const __m128i *)scales);
    const __m128i low = _mm_srlv_epi32(_mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11)),
                                       _mm_setr_epi32(0, 0, 0, 4));
    const __m128i top2 = _mm_shuffle_epi8(b, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    return _mm_or_si128(_mm_and_si128(low, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
                        _mm_and_si128(_mm_srli_epi32(top2, 2), _mm_set1_epi8(0x30)));
}

/* the 5th bit of the elements of sub-block j is bit j of qh[l] */
INLINE __m256i fifth_bit(const uint8_t *qh, int j) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    return _mm256_and_si256(move_bits(h, j, 4), _mm256_set1_epi8(0x10));
}
/* Q3_K's sixteen 6-bit scales (layout in quants_ref.c, q3_K_scales), minus 32:
 *   low 4 bits of scale j: b[j] & 15 (j < 8), b[j - 8] >> 4 (j >= 8)
 *   high 2 bits: b[8 + j % 4] >> 2 * (j / 4), i.e. byte j of [u32 b[8..11] >> 0, 2, 4, 6] */
INLINE __m128i q3_K_scales(const uint8_t *b) {
    uint32_t high;
    memcpy(&high, b + 8, 4);
    const __m128i lo8 = _mm_loadl_epi64((const __m128i *)b);
    const __m128i low4 = _mm_and_si128(_mm_unpacklo_epi64(lo8, _mm_srli_epi16(lo8, 4)), _mm_set1_epi8(0x0F));
    const __m128i hi2 = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)high), _mm_setr_epi32(0, 2, 4, 6)),
                                      _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(low4, _mm_slli_epi16(hi2, 4)), _mm_set1_epi8(32));
}

/* ---------------------------------------------------------------- rows of a product_fn */

/* a kernel of quants_avx2.c (sections 2 and 3) or quants_iq_grid_avx2.c: one weight row of
 * `type` against R activation rows, in `order` (which some kernels serve several of:
 * IQ4_NL's vec_dot and tinyBLAS, gemv and gemm) */
typedef void row_kernel(const int type, const product_order order, const int R, int64_t k, const void *w,
                        const void *act, int64_t act_stride, float *out, int64_t ldo);

/* the rows of one call, each through `kernel` specialised for R = n_act activation rows */
INLINE void product_rows(row_kernel *kernel, const int type, const product_order order, const product_args *p) {
    for (int j = 0; j < p->n_rows; j++) {
        const void *w = (const char *)p->w + j * p->w_stride;
        switch (p->n_act) {
        case 1: kernel(type, order, 1, p->k, w, p->act, p->act_stride, p->out + j, p->ldo); break;
        case 2: kernel(type, order, 2, p->k, w, p->act, p->act_stride, p->out + j, p->ldo); break;
        case 3: kernel(type, order, 3, p->k, w, p->act, p->act_stride, p->out + j, p->ldo); break;
        default: kernel(type, order, 4, p->k, w, p->act, p->act_stride, p->out + j, p->ldo); break;
        }
    }
}

/* ---------------------------------------------------------------- K-quant slices */

/* quants of slice s = 4h + j, each type's bits (see quants_ref.c) */
INLINE __m256i slice_q2_K(const block_q2_K *b, int h, int j) {
    const __m256i qs = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * h));
    return _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), _mm256_set1_epi8(3));
}
INLINE __m256i slice_q3_K(const block_q3_K *b, int h, int j) {
    const __m256i qs = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * h));
    const __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), _mm256_set1_epi8(3));
    const __m256i hb = _mm256_and_si256(move_bits(hm, 4 * h + j, 2), _mm256_set1_epi8(4));
    return _mm256_or_si256(low, hb);
}
INLINE __m256i slice_q6_K(const block_q6_K *b, int h, int j) {
    const __m256i ql = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (j & 1)));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (j >> 1)), _mm256_set1_epi8(0x0F));
    const __m256i hi2 = _mm256_and_si256(move_bits(qh, 2 * j, 4), _mm256_set1_epi8(0x30));
    return _mm256_or_si256(low, hi2);
}

#endif /* PYGGML_AVX2_BLOCKS_H */
