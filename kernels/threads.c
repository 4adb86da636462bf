/* threads.c -- a small thread pool: the calling thread and up to n - 1 workers share
 * the chunks of one job.
 *
 * Why not OpenMP: at the end of an OpenMP region the caller waits for every thread
 * of the team.  When another process holds a core, the worker on it may not run for
 * a whole scheduler time slice (milliseconds), and every product waits for it: with
 * a busy second core, decode slows down by a large factor.  In this pool the caller
 * waits only for chunks that a worker has actually claimed; a worker that is not
 * running claims nothing, and the caller does its share.  On a quiet machine both
 * behave the same.
 *
 * Lanes.  A job's chunks are split into one contiguous lane per thread; a thread
 * claims the chunks of its own lane in order, then helps with the other lanes.  So
 * each thread streams through consecutive memory: the hardware prefetcher sees one
 * long stream (chunks dealt out alternately read DRAM well below its bandwidth).
 *
 *   lane r holds chunks [r * n / L, (r + 1) * n / L);  its word:
 *   lane[r] = generation << 32 | next chunk to claim   (one 64-bit atomic)
 *
 * A chunk is claimed by a compare-and-swap of its lane word that keeps the
 * generation, so a thread that read an older job can never claim a chunk of a newer
 * one.  Between jobs the lanes are CLOSED while the caller rewrites the job
 * description; it starts a new job only when every chunk of the last one is done, so
 * a claimed chunk always runs with the description it was claimed under.
 *
 * Idle workers spin for 2 ms (decode calls come back within microseconds), then
 * sleep on a condition variable; the caller signals only when someone sleeps.
 * One caller at a time: a second thread calling in while a job runs does its work
 * alone.  After fork() the child has no workers and runs jobs alone until it starts
 * new ones.
 */
#define _POSIX_C_SOURCE 200809L     /* pthreads, sysconf, sched_yield, clock_gettime in C99 */

#include "cpu_internal.h"

#if PYGGML_THREADS

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 63
#define CLOSED 0xFFFFFFFFu
#define SPIN_NS 2000000             /* an idle worker spins 2 ms, then sleeps */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    uint64_t word;                  /* atomic: generation << 32 | next chunk */
    char pad[56];                   /* one cache line per lane: no false sharing */
} lane;

static struct {
    pthread_mutex_t caller;         /* held by the one thread running a job */
    pthread_mutex_t lock;           /* guards sleeping and starting workers */
    pthread_cond_t wake;
    int n_workers;
    int n_sleeping;                 /* atomic */
    uint32_t published;             /* atomic: generation of the current job */
    int64_t done;                   /* atomic: chunks finished in this generation */
    /* the job, rewritten only while every lane is CLOSED */
    chunk_fn fn;
    void *ctx;
    int64_t n_chunks;
    int n_lanes;                    /* = threads asked for; worker i works from lane i + 1 */
    int lanes_used;                 /* lanes ever opened: each new job closes them all */
    lane lanes[MAX_WORKERS + 1];
} pool = {.caller = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

static int64_t lane_start(int64_t n_chunks, int n_lanes, int r) { return n_chunks * r / n_lanes; }

/* claim and run chunks of generation gen, own lane first, then the others */
static void work_on(uint32_t gen, int home) {
    const int n_lanes = __atomic_load_n(&pool.n_lanes, __ATOMIC_RELAXED);
    const int64_t n_chunks = __atomic_load_n(&pool.n_chunks, __ATOMIC_RELAXED);
    for (int i = 0; i < n_lanes; i++) {
        const int r = (home + i) % n_lanes;
        /* n_lanes and n_chunks may belong to a newer job: then the lane's generation
         * differs and no compare-and-swap below succeeds */
        const int64_t end = lane_start(n_chunks, n_lanes, r + 1);
        uint64_t w = __atomic_load_n(&pool.lanes[r].word, __ATOMIC_ACQUIRE);
        for (;;) {
            const uint32_t next = (uint32_t)w;
            if ((uint32_t)(w >> 32) != gen || next == CLOSED || next >= end) break;
            if (!__atomic_compare_exchange_n(&pool.lanes[r].word, &w, w + 1, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                continue;                             /* w now holds the lane's new word */
            pool.fn(pool.ctx, next);
            __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
            w = __atomic_load_n(&pool.lanes[r].word, __ATOMIC_ACQUIRE);
        }
    }
}

static void *worker_main(void *arg) {
    const int home = (int)(intptr_t)arg + 1;
    uint32_t seen = __atomic_load_n(&pool.published, __ATOMIC_ACQUIRE);
    int64_t idle_since = now_ns();
    for (unsigned spins = 1;; spins++) {
        const uint32_t gen = __atomic_load_n(&pool.published, __ATOMIC_ACQUIRE);
        if (gen != seen) {
            seen = gen;
            if (home < __atomic_load_n(&pool.n_lanes, __ATOMIC_RELAXED)) work_on(gen, home);
            idle_since = now_ns();
            continue;
        }
        if (spins % 256 || now_ns() - idle_since < SPIN_NS) {
            cpu_relax();
            continue;
        }
        /* sleep until a new job; the caller broadcasts when n_sleeping > 0 */
        pthread_mutex_lock(&pool.lock);
        __atomic_add_fetch(&pool.n_sleeping, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&pool.published, __ATOMIC_SEQ_CST) == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        __atomic_sub_fetch(&pool.n_sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&pool.lock);
        idle_since = now_ns();
    }
    return NULL;
}

static void after_fork_in_child(void) {
    pthread_mutex_init(&pool.caller, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.n_workers = pool.n_sleeping = 0;
}

/* start workers up to n; fewer if the system refuses */
static void ensure_workers(int n) {
    static int atfork_registered = 0;
    if (__atomic_load_n(&pool.n_workers, __ATOMIC_ACQUIRE) >= n) return;
    pthread_mutex_lock(&pool.lock);
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        atfork_registered = 1;
    }
    while (pool.n_workers < n) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)pool.n_workers);
        pthread_attr_destroy(&attr);
        if (failed) break;
        __atomic_store_n(&pool.n_workers, pool.n_workers + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&pool.lock);
}

int default_threads(void) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 1 ? (int)(n < MAX_WORKERS + 1 ? n : MAX_WORKERS + 1) : 1;
}

void run_chunks(int n_threads, int64_t n_chunks, chunk_fn fn, void *ctx) {
    if (n_threads > MAX_WORKERS + 1) n_threads = MAX_WORKERS + 1;
    if (n_threads <= 1 || n_chunks <= 1 || n_chunks >= CLOSED || pthread_mutex_trylock(&pool.caller)) {
        for (int64_t c = 0; c < n_chunks; c++) fn(ctx, c);    /* alone */
        return;
    }
    ensure_workers(n_threads - 1);
    /* close every lane under the new generation, describe the job, open the lanes */
    const uint32_t gen = __atomic_load_n(&pool.published, __ATOMIC_RELAXED) + 1;
    if (pool.lanes_used < n_threads) pool.lanes_used = n_threads;
    for (int r = 0; r < pool.lanes_used; r++)
        __atomic_store_n(&pool.lanes[r].word, (uint64_t)gen << 32 | CLOSED, __ATOMIC_SEQ_CST);
    pool.fn = fn;
    pool.ctx = ctx;
    __atomic_store_n(&pool.n_chunks, n_chunks, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.n_lanes, n_threads, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
    for (int r = 0; r < n_threads; r++)
        __atomic_store_n(&pool.lanes[r].word, (uint64_t)gen << 32 | (uint64_t)lane_start(n_chunks, n_threads, r),
                         __ATOMIC_RELEASE);
    __atomic_store_n(&pool.published, gen, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pool.n_sleeping, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work_on(gen, 0);
    /* every chunk is claimed; wait for the ones still running elsewhere */
    for (unsigned spins = 0; __atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < n_chunks; spins++) {
        if (spins < 100000) cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&pool.caller);
}

#else /* no threads: everything on the calling thread */

int default_threads(void) { return 1; }

void run_chunks(int n_threads, int64_t n_chunks, chunk_fn fn, void *ctx) {
    (void)n_threads;
    for (int64_t c = 0; c < n_chunks; c++) fn(ctx, c);
}

#endif
