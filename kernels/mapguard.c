/* mapguard.c -- the SIGBUS handler of libpyggml_mapguard (see mapguard.h).
 *
 * The handler runs in whichever thread touched a page that is gone, at any point of
 * any code, so it calls only what is async-signal-safe: lock-free atomics, write,
 * pause, sigaction, raise and _exit.  No locks, no malloc, no stdio.
 *
 *   slots[]    a fixed table of registered mappings, each a state word and the
 *              mapping's start, length and path.  A slot is claimed by a
 *              compare-and-swap FREE -> WRITING, filled, then published by a release
 *              store of PUBLISHED; the handler reads only PUBLISHED slots, with an
 *              acquire load, so it never sees a half-written one.
 *   previous_action   whatever handled SIGBUS before us; a fault outside every
 *              registered mapping goes back to it.
 *
 * A slot is freed only after its mapping is unmapped, and a fault inside a mapping
 * means the mapping exists, so the handler never reads a slot that is being rewritten.
 */
#define _POSIX_C_SOURCE 200809L     /* sigaction, siginfo_t and strnlen under -std=c11 */

#include "mapguard.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAPGUARD_ABI_VERSION 1
#define MAX_MAPPINGS 256            /* one per open shard: far more than any model has */
#define MAX_PATH_BYTES 4096         /* a longer path is cut and ends in "..." */

/* The exit status after a fault in a registered mapping: 2, what the pyggml command
 * returns for every PyggmlError, and so for GGUFChangedError, the error the same change
 * gives when check_unchanged() sees it before a read.  A script thus gets one status
 * for "the model file changed" whichever of the two caught it.  Not 128 + SIGBUS: that
 * status reads as "killed by a signal", a crash, and this is a diagnosed file error. */
#define CHANGED_FILE_EXIT_STATUS 2

/* Lock-free atomics are async-signal-safe; atomics emulated with a lock are not. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the handler needs lock-free atomic int");

enum slot_state { SLOT_FREE = 0, SLOT_WRITING, SLOT_PUBLISHED };

typedef struct {
    atomic_int state;               /* enum slot_state */
    uintptr_t start;
    size_t length;
    size_t path_length;
    char path[MAX_PATH_BYTES];      /* not NUL-terminated: path_length bytes */
} mapping_slot;

static mapping_slot slots[MAX_MAPPINGS];
static struct sigaction previous_action;
static atomic_int installed;
static atomic_flag reporting = ATOMIC_FLAG_INIT;

static void write_all(const char *text, size_t length) {
    while (length > 0) {
        ssize_t written = write(STDERR_FILENO, text, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return;                 /* stderr closed or broken: nothing else can be told */
        text += written;
        length -= (size_t)written;
    }
}

static inline void write_text(const char *text) {
    write_all(text, strlen(text));
}

/* value in decimal, written backwards so that it ends at end; returns its first digit
 * (snprintf is not async-signal-safe) */
static char *format_decimal(char *end, uintmax_t value) {
    do {
        *--end = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    return end;
}

static void report_and_exit(const mapping_slot *slot, uintptr_t offset) {
    /* Threads reading the same file fault together: one message, then _exit ends all. */
    if (atomic_flag_test_and_set(&reporting)) {
        for (;;)
            pause();
    }
    char digits[3 * sizeof(uintmax_t)];
    char *end = digits + sizeof digits;
    char *first = format_decimal(end, offset);
    write_text("pyggml: error: ");
    write_all(slot->path, slot->path_length);
    write_text(" changed while it was mapped (truncated or rewritten in place by another "
               "process): reading byte offset ");
    write_all(first, (size_t)(end - first));
    write_text(" failed (SIGBUS); run again once the file is complete\n");
    _exit(CHANGED_FILE_EXIT_STATUS);
}

/* Whether the kernel raised this SIGBUS for an access (POSIX's SIGBUS fault codes), so
 * that si_addr is its address and returning runs the access, and faults, again.  A signal
 * sent by kill or raise carries no address. */
static inline int is_access_fault(const siginfo_t *info) {
    return info->si_code == BUS_ADRERR || info->si_code == BUS_OBJERR
        || info->si_code == BUS_ADRALN;
}

/* A SIGBUS that is not ours (a real bug, or one sent by kill): put the previous action
 * back, as if we had never been installed.  A fault then happens again when the handler
 * returns; a sent signal is raised again (it stays pending until the handler returns). */
static void pass_to_previous_action(int signum, const siginfo_t *info) {
    int saved_errno = errno;
    sigaction(SIGBUS, &previous_action, NULL);
    if (!is_access_fault(info))
        raise(signum);
    errno = saved_errno;
}

static void on_sigbus(int signum, siginfo_t *info, void *context) {
    (void)context;
    if (is_access_fault(info)) {
        uintptr_t address = (uintptr_t)info->si_addr;
        for (int i = 0; i < MAX_MAPPINGS; i++) {
            mapping_slot *slot = &slots[i];
            /* unsigned: an address below start wraps to a huge distance */
            if (atomic_load_explicit(&slot->state, memory_order_acquire) == SLOT_PUBLISHED
                    && address - slot->start < slot->length)
                report_and_exit(slot, address - slot->start);
        }
    }
    pass_to_previous_action(signum, info);
}

int pyggml_mapguard_abi_version(void) {
    return MAPGUARD_ABI_VERSION;
}

int pyggml_mapguard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1))
        return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    /* previous_action is read before ours is installed, so the handler never sees it unset */
    if (sigaction(SIGBUS, NULL, &previous_action) != 0 || sigaction(SIGBUS, &action, NULL) != 0) {
        int error = errno;
        atomic_store(&installed, 0);
        return -error;
    }
    return 0;
}

int pyggml_mapguard_add(const void *start, size_t length, const char *path) {
    if (start == NULL || length == 0 || path == NULL)
        return -1;
    for (int i = 0; i < MAX_MAPPINGS; i++) {
        mapping_slot *slot = &slots[i];
        int expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slot->state, &expected, SLOT_WRITING))
            continue;
        slot->start = (uintptr_t)start;
        slot->length = length;
        size_t path_length = strnlen(path, MAX_PATH_BYTES + 1);
        if (path_length > MAX_PATH_BYTES) {
            memcpy(slot->path, path, MAX_PATH_BYTES - 3);
            memcpy(slot->path + MAX_PATH_BYTES - 3, "...", 3);
            path_length = MAX_PATH_BYTES;
        } else {
            memcpy(slot->path, path, path_length);
        }
        slot->path_length = path_length;
        atomic_store_explicit(&slot->state, SLOT_PUBLISHED, memory_order_release);
        return i;
    }
    return -1;
}

void pyggml_mapguard_remove(int slot) {
    if (slot >= 0 && slot < MAX_MAPPINGS)
        atomic_store_explicit(&slots[slot].state, SLOT_FREE, memory_order_release);
}
