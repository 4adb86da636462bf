/* threads.c -- a small thread pool: the calling thread and up to n - 1 workers share
 * the chunks of one job.
 *
 * Why not OpenMP: at the end of an OpenMP region the caller waits for every thread
 * of the team.  When another process holds a core, the worker on it may not run for
 * a whole scheduler time slice (milliseconds), and every product waits for it:
 * measured here with a busy second core, one decode token of the 1.5B model took
 * 1.77 s instead of 43 ms.  In this pool the caller waits only for chunks that a
 * worker has actually claimed; a worker that is not running claims nothing, and the
 * caller does its share.  On a quiet machine both behave the same.
 *
 * The job slot
 *   state = generation << 32 | next chunk to claim   (one 64-bit atomic word)
 *   A chunk is claimed by a compare-and-swap of state that keeps the generation, so
 *   a worker that read an older job can never claim a chunk of a newer one.  Between
 *   jobs, next = CLOSED while the caller rewrites the job description; the caller
 *   starts a new job only when every chunk of the last one is done, so a claimed
 *   chunk always runs with the description it was claimed under.
 *
 * Idle workers spin for a while (decode calls come back within microseconds), then
 * sleep on a condition variable; the caller signals only when someone sleeps.
 * One caller at a time: a second thread calling in while a job runs does its work
 * alone.  After fork() the child has no workers and runs jobs alone.
 */
#define _POSIX_C_SOURCE 200809L     /* pthreads, sysconf, sched_yield under -std=c99 */

#include "cpu_internal.h"

#if PYGGML_THREADS

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#define MAX_WORKERS 63
#define CLOSED 0xFFFFFFFFu
#define SPIN_ROUNDS 20000          /* pauses before an idle worker sleeps: ~0.1 to 1 ms */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static struct {
    pthread_mutex_t caller;        /* held by the one thread running a job */
    pthread_mutex_t lock;          /* guards sleeping workers and starting workers */
    pthread_cond_t wake;
    int n_workers;
    int n_sleeping;                /* atomic */
    uint64_t state;                /* atomic: generation << 32 | next chunk */
    int64_t done;                  /* atomic: chunks finished in this generation */
    /* the job, rewritten only while state's next is CLOSED */
    chunk_fn fn;
    void *ctx;
    int64_t n_chunks;
    int n_helpers;                 /* workers 0 .. n_helpers-1 take part */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, CLOSED, 0, NULL, NULL, 0, 0};

/* claim and run chunks of generation gen until none is left; true if it ran any */
static int work_on(uint32_t gen) {
    int ran = 0;
    uint64_t s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((uint32_t)(s >> 32) != gen) return ran;
        const uint32_t next = (uint32_t)s;
        /* reading the job is safe: if it changed, so did state, and the CAS fails */
        const int64_t n_chunks = __atomic_load_n(&pool.n_chunks, __ATOMIC_RELAXED);
        if (next == CLOSED || next >= n_chunks) return ran;
        if (!__atomic_compare_exchange_n(&pool.state, &s, s + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;                              /* s now holds the new value */
        pool.fn(pool.ctx, next);
        __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
        ran = 1;
        s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = (uint32_t)(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE) >> 32);
    int idle = 0;
    for (;;) {
        const uint64_t s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
        const uint32_t gen = (uint32_t)(s >> 32);
        if (gen != seen && (uint32_t)s != CLOSED) {
            seen = gen;
            idle = 0;
            if (index < __atomic_load_n(&pool.n_helpers, __ATOMIC_RELAXED)) work_on(gen);
            continue;
        }
        if (++idle < SPIN_ROUNDS) {
            cpu_relax();
            continue;
        }
        /* sleep until the state changes; the caller broadcasts when n_sleeping > 0 */
        pthread_mutex_lock(&pool.lock);
        __atomic_add_fetch(&pool.n_sleeping, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&pool.state, __ATOMIC_SEQ_CST) == s)
            pthread_cond_wait(&pool.wake, &pool.lock);
        __atomic_sub_fetch(&pool.n_sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&pool.lock);
        idle = 0;
    }
    return NULL;
}

static void after_fork_in_child(void) {
    pthread_mutex_init(&pool.caller, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.n_workers = pool.n_sleeping = 0;
}

/* start workers up to n (under pool.lock); fewer if the system refuses */
static void ensure_workers(int n) {
    static int atfork_registered = 0;
    if (n > MAX_WORKERS) n = MAX_WORKERS;
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
#ifdef _SC_NPROCESSORS_ONLN
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 1 ? (int)(n < MAX_WORKERS + 1 ? n : MAX_WORKERS + 1) : 1;
#else
    return 1;
#endif
}

void run_chunks(int n_threads, int64_t n_chunks, chunk_fn fn, void *ctx) {
    if (n_threads <= 1 || n_chunks <= 1 || n_chunks >= CLOSED || pthread_mutex_trylock(&pool.caller)) {
        for (int64_t c = 0; c < n_chunks; c++) fn(ctx, c);    /* alone */
        return;
    }
    ensure_workers(n_threads - 1);
    /* close the slot, describe the job, open it under a new generation */
    const uint64_t old = __atomic_load_n(&pool.state, __ATOMIC_RELAXED);
    const uint32_t gen = (uint32_t)(old >> 32) + 1;
    __atomic_store_n(&pool.state, (uint64_t)gen << 32 | CLOSED, __ATOMIC_SEQ_CST);
    pool.fn = fn;
    pool.ctx = ctx;
    __atomic_store_n(&pool.n_chunks, n_chunks, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.n_helpers, n_threads - 1, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pool.state, (uint64_t)gen << 32, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pool.n_sleeping, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work_on(gen);
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
