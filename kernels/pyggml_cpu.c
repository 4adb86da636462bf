/* pyggml_cpu.c -- the ABI of libpyggml_cpu (documented in pyggml_cpu.h): argument
 * checks, the choice of kernel per type, threads and loop blocking.
 *
 * Which kernel: each product follows the float order llama.cpp's CPU backend gives
 * it (ggml_order.c: ggml_product_order of the type, the matrix's row count and the
 * number of activation rows), with the fast kernel of that order (quants_avx2.c,
 * panels_avx2.c) or, without one, the scalar reference -- the same bits either way.
 *
 * How a product is cut up
 *   The weight rows of all jobs are cut into chunks of whole groups of ROW_GROUP (8)
 *   rows; the calling thread and the pool's workers (threads.c) claim chunks one at a
 *   time, so a thread slowed down by another process does not hold the others back.
 *   Inside a chunk:
 *
 *       for each group of up to MAX_ACT_ROWS activation rows t0..t0+R-1
 *           for each group of up to 8 weight rows n..n+7 of the chunk
 *               out[t0..t0+R-1][n..n+7] = product(W[n..n+7], act[t0..t0+R-1])
 *
 *   Decode (one activation row): chunks of ~64 KB of weights, long enough
 *   for the hardware prefetcher to stream them.  A few activation rows: chunks
 *   of ~16 KB, so that a chunk stays in L1 while every group of activation rows
 *   passes over it, and each weight block is unpacked once per R activation rows.
 *   Prefill of K-quants and Q4_0 Q5_0 Q8_0 IQ4_NL (PANEL_MIN_ACT rows or more, VNNI
 *   builds): chunks of panel_rows(type) rows (8, or 16 for K-quants with AVX-512),
 *   unpacked once into a panel that all activation rows use (panels_avx2.c).
 *
 *   Products smaller than PARALLEL_MIN_BYTES run on the calling thread alone:
 *   handing out chunks costs more than they save.
 *
 * A job's activation rows may come in two parts of different orders: a repacked
 * matrix takes the first n_act - n_act % 4 rows 4 at a time (ORDER_GEMM), the rest
 * one by one (ORDER_GEMV).  Activations are quantized once per call, for all its jobs.
 */
#include "cpu_internal.h"
#include "pyggml_cpu.h"

#define DECODE_CHUNK_BYTES (64 * 1024)
#define PANEL_MIN_ACT 8                    /* panels pay for their packing from about 8 rows */
#define PREFILL_CHUNK_BYTES (16 * 1024)
#ifndef PARALLEL_MIN_BYTES                 /* (a -D for experiments) */
#define PARALLEL_MIN_BYTES (128 * 1024)    /* weight bytes x activation rows: about the break-even */
#endif

int pyggml_cpu_abi_version(void) { return PYGGML_CPU_ABI_VERSION; }

const char *pyggml_cpu_features(void) {
    return "C99"
#ifdef __AVX2__
           " AVX2"
#endif
#ifdef __FMA__
           " FMA"
#endif
#ifdef __F16C__
           " F16C"
#endif
#ifdef __AVXVNNI__
           " AVXVNNI"
#endif
#ifdef __AVX512F__                 /* -march=native may use them anywhere: loaders check them */
           " AVX512F"
#endif
#ifdef __AVX512BW__
           " AVX512BW"
#endif
#ifdef __AVX512VL__
           " AVX512VL"
#endif
#if PYGGML_THREADS
           " THREADS"
#endif
        ;
}

int pyggml_cpu_max_threads(void) { return default_threads(); }

int pyggml_act_type(int w_type) {
    const type_traits *t = ref_traits(w_type);
    return t ? t->act_type : -1;
}

int64_t pyggml_row_bytes(int type, int64_t k) {
    const type_traits *t = ref_traits(type);
    if (!t || k < 0 || k % t->block_size) return -1;
    return k / t->block_size * t->type_size;
}

product_fn product_for(const type_traits *t, product_order order) {
    const product_fn fast = fast_product(t->type, order);
    return fast ? fast : ref_product;
}

quantize_row_fn quantize_row_for(int act_type) {
    const quantize_row_fn fast = fast_quantize_row(act_type);
    if (fast) return fast;
    switch (act_type) {
    case GGML_TYPE_Q8_0: return quantize_row_q8_0;
    case GGML_TYPE_Q8_1: return quantize_row_q8_1;
    case GGML_TYPE_Q8_K: return quantize_row_q8_K_ref;
    default: return NULL;
    }
}

static int threads_for(int64_t work_bytes, int n_threads) {
    if (work_bytes < PARALLEL_MIN_BYTES) return 1;
    return n_threads > 0 ? n_threads : default_threads();
}

/* ================================================================ activations */

typedef struct {
    quantize_row_fn quantize;
    const float *x;
    int64_t ldx, k, row_bytes;
    char *y;
} quantize_job;

static void quantize_chunk(void *ctx, int64_t t) {
    const quantize_job *q = ctx;
    q->quantize(q->x + t * q->ldx, q->y + t * q->row_bytes, q->k);
}

int pyggml_quantize_act(int act_type, const float *x, int64_t ldx, int64_t n_rows, int64_t k,
                        void *y) {
    const quantize_row_fn quantize = quantize_row_for(act_type);
    const int64_t row_bytes = pyggml_row_bytes(act_type, k);
    if (!quantize) return PYGGML_ERR_TYPE;
    if (row_bytes < 0 || n_rows < 0) return PYGGML_ERR_SHAPE;
    if (n_rows == 0) return PYGGML_OK;
    if (!x || !y || (n_rows > 1 && ldx < k)) return PYGGML_ERR_ARG;
    quantize_job job = {quantize, x, ldx, k, row_bytes, y};
    run_chunks(threads_for(n_rows * k * 4, 0), n_rows, quantize_chunk, &job);
    return PYGGML_OK;
}

/* ================================================================ dequantization */

typedef struct {
    dequantize_row_fn dequantize_row;
    const char *w;
    int64_t w_stride;
    const int64_t *rows;
    int64_t k;
    float *out;
    int64_t ldo;
} dequant_job;

static void dequant_chunk(void *ctx, int64_t i) {
    const dequant_job *d = ctx;
    d->dequantize_row(d->w + (d->rows ? d->rows[i] : i) * d->w_stride, d->out + i * d->ldo, d->k);
}

int pyggml_dequantize_rows(int type, const void *w, int64_t w_stride, int64_t n_w_rows,
                           const int64_t *rows, int64_t n_rows, int64_t k, float *out, int64_t ldo) {
    const type_traits *t = ref_traits(type);
    if (!t || !t->dequantize_row) return PYGGML_ERR_TYPE;
    const int64_t row_bytes = pyggml_row_bytes(type, k);
    if (row_bytes < 0 || n_rows < 0 || n_w_rows < 0) return PYGGML_ERR_SHAPE;
    if (n_rows == 0) return PYGGML_OK;
    if (!w || !out || (n_rows > 1 && ldo < k) || (n_w_rows > 1 && w_stride < row_bytes))
        return PYGGML_ERR_ARG;
    if (rows) {
        for (int64_t i = 0; i < n_rows; i++)
            if (rows[i] < 0 || rows[i] >= n_w_rows) return PYGGML_ERR_INDEX;
    } else if (n_rows > n_w_rows) {
        return PYGGML_ERR_INDEX;
    }
    dequant_job job = {t->dequantize_row, w, w_stride, rows, k, out, ldo};
    run_chunks(threads_for(n_rows * row_bytes, 0), n_rows, dequant_chunk, &job);
    return PYGGML_OK;
}

/* ================================================================ products */

int pyggml_vec_dot_ref(int w_type, const void *w_row, const void *act_row, int64_t k, float *out) {
    const type_traits *t = ref_traits(w_type);
    if (!t || t->act_type < 0) return PYGGML_ERR_TYPE;
    if (k <= 0 || k % t->block_size) return PYGGML_ERR_SHAPE;
    if (!w_row || !act_row || !out) return PYGGML_ERR_ARG;
    *out = ref_dot(w_type, ORDER_VEC_DOT, k, w_row, act_row);
    return PYGGML_OK;
}

/* what a checked job needs in the hot loop: its weights and activation rows t0..t1-1,
 * all in one order */
typedef struct {
    int type;
    product_order order;
    const char *w;
    int64_t w_stride, n_rows, chunk_rows, n_chunks, t0, t1;
    float *out;
    int64_t ldo;
    product_fn product;
    panel_fn panel;            /* prefill with many activation rows: chunks are one panel */
} prepared_job;

/* everything a product's chunks need, shared by the threads */
typedef struct {
    const prepared_job *prep;
    int64_t k, act_stride;
    const char *act;
} product_plan;

/* chunk c of the concatenated jobs: its activation rows times its weight rows */
static void product_chunk(void *ctx, int64_t c) {
    const product_plan *p = ctx;
    const prepared_job *job = p->prep;
    while (c >= job->n_chunks) c -= job++->n_chunks;
    const int64_t row0 = c * job->chunk_rows;
    const int64_t row1 = row0 + job->chunk_rows < job->n_rows ? row0 + job->chunk_rows : job->n_rows;
    product_args args = {job->type, job->order, p->k, job->w + row0 * job->w_stride, job->w_stride,
                         (int)(row1 - row0), p->act + job->t0 * p->act_stride, p->act_stride,
                         job->t1 - job->t0, job->out + job->t0 * job->ldo + row0, job->ldo};
    if (job->panel && job->panel(&args))
        return;                /* (else out of memory for the panel: the row kernels instead) */
    for (int64_t t0 = job->t0; t0 < job->t1; t0 += MAX_ACT_ROWS) {
        args.act = p->act + t0 * p->act_stride;
        args.n_act = job->t1 - t0 < MAX_ACT_ROWS ? job->t1 - t0 : MAX_ACT_ROWS;
        for (int64_t n = row0; n < row1; n += ROW_GROUP) {
            args.w = job->w + n * job->w_stride;
            args.n_rows = (int)(row1 - n < ROW_GROUP ? row1 - n : ROW_GROUP);
            args.out = job->out + t0 * job->ldo + n;
            job->product(&args);
        }
    }
}

/* the parts of all jobs, in one parallel region */
static void run_products(const prepared_job *prep, int n, int nt, int64_t k, const char *act,
                         int64_t act_stride) {
    int64_t n_chunks = 0;
    for (int j = 0; j < n; j++) n_chunks += prep[j].n_chunks;
    product_plan plan = {prep, k, act_stride, act};
    run_chunks(nt, n_chunks, product_chunk, &plan);
}

#define MAX_JOBS 16

/* the order row t of n_act multiplies in; with rows_alone, that of a product of one row */
static product_order row_order(int type, int64_t n_rows, int64_t n_act, int64_t t, int rows_alone) {
    return rows_alone ? ggml_product_order(type, n_rows, 1, 0) : ggml_product_order(type, n_rows, n_act, t);
}

static int matmul(const pyggml_matmul_job *jobs, int n_jobs, const float *x, int64_t ldx,
                  void *act, int64_t n_act, int64_t k, int n_threads, int rows_alone) {
    if (!jobs || n_jobs < 1 || n_jobs > MAX_JOBS) return PYGGML_ERR_ARG;
    if (n_act < 1 || k < 1) return PYGGML_ERR_SHAPE;

    /* each job's activation rows in at most two parts of one order each (GEMM, GEMV) */
    prepared_job prep[2 * MAX_JOBS];
    int act_type = -1, n_parts = 0;
    int64_t work = 0;
    const int64_t chunk_bytes = n_act > 1 ? PREFILL_CHUNK_BYTES : DECODE_CHUNK_BYTES;
    for (int j = 0; j < n_jobs; j++) {
        const pyggml_matmul_job *job = &jobs[j];
        const type_traits *t = ref_traits(job->type);
        if (!t || t->act_type < 0) return PYGGML_ERR_TYPE;
        if (j > 0 && t->act_type != act_type) return PYGGML_ERR_ARG;
        act_type = t->act_type;
        const int64_t row_bytes = pyggml_row_bytes(job->type, k);
        if (row_bytes < 0 || job->n_rows < 0) return PYGGML_ERR_SHAPE;
        if (job->n_rows > 0 && (!job->w || !job->out)) return PYGGML_ERR_ARG;
        if (job->n_rows > 1 && job->w_stride < row_bytes) return PYGGML_ERR_ARG;
        if (n_act > 1 && job->ldo < job->n_rows) return PYGGML_ERR_ARG;
        work += job->n_rows * row_bytes;
        for (int64_t t0 = 0; t0 < n_act;) {
            const product_order order = row_order(job->type, job->n_rows, n_act, t0, rows_alone);
            int64_t t1 = t0 + 1;
            while (t1 < n_act && row_order(job->type, job->n_rows, n_act, t1, rows_alone) == order) t1++;
            prepared_job *p = &prep[n_parts++];
            p->type = job->type;
            p->order = order;
            p->w = job->w;
            p->w_stride = job->w_stride;
            p->n_rows = job->n_rows;
            p->t0 = t0;
            p->t1 = t1;
            p->out = job->out;
            p->ldo = job->ldo;
            p->product = product_for(t, order);
            p->panel = t1 - t0 >= PANEL_MIN_ACT ? fast_panel(t->type, order) : NULL;
            const int64_t rows = chunk_bytes / row_bytes > ROW_GROUP ? chunk_bytes / row_bytes : ROW_GROUP;
            p->chunk_rows = p->panel ? panel_rows(job->type) : rows / ROW_GROUP * ROW_GROUP;
            p->n_chunks = (job->n_rows + p->chunk_rows - 1) / p->chunk_rows;
            t0 = t1;
        }
    }

    /* where the activation rows are, and whether they must be quantized first */
    const int64_t act_row_bytes = pyggml_row_bytes(act_type, k);
    const quantize_row_fn quantize = x && act_type != GGML_TYPE_F32 ? quantize_row_for(act_type) : NULL;
    int64_t act_stride = act_row_bytes;
    if (x && n_act > 1 && ldx < k) return PYGGML_ERR_ARG;
    if (x && act_type == GGML_TYPE_F32) {
        act = (void *)x;
        act_stride = ldx * (int64_t)sizeof(float);
    }
    if (!act) return PYGGML_ERR_ARG;

    const int nt = threads_for(work * n_act, n_threads);
    if (quantize) {             /* every activation row is ready before any product starts */
        quantize_job q = {quantize, x, ldx, k, act_row_bytes, act};
        run_chunks(nt, n_act, quantize_chunk, &q);
    }
    run_products(prep, n_parts, nt, k, act, act_stride);
    return PYGGML_OK;
}

int pyggml_matmul(const pyggml_matmul_job *jobs, int n_jobs, const float *x, int64_t ldx,
                  void *act, int64_t n_act, int64_t k, int n_threads) {
    return matmul(jobs, n_jobs, x, ldx, act, n_act, k, n_threads, 0);
}

int pyggml_matmul_rows_alone(const pyggml_matmul_job *jobs, int n_jobs, const float *x,
                             int64_t ldx, void *act, int64_t n_act, int64_t k, int n_threads) {
    return matmul(jobs, n_jobs, x, ldx, act, n_act, k, n_threads, 1);
}
