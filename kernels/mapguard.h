/* mapguard.h -- the C ABI of libpyggml_mapguard: one line instead of a bare "Bus error"
 * when a read of a mapped GGUF file faults because the file changed under the map.
 *
 * Reading a page of a file mapping that lies beyond the file's current end (another
 * process truncated the file, or is rewriting it in place) raises SIGBUS in the reading
 * thread, whoever reads: numpy, numba, libpyggml_cpu's threads, the CUDA driver copying
 * weights to the GPU.  Python cannot handle it (a Python-level handler returns, and the
 * read faults again), so this library does: pyggml registers each file mapping with the
 * file's path; a SIGBUS whose address lies in a registered mapping writes
 *
 *     pyggml: error: PATH changed while it was mapped (...): reading byte offset N ...
 *
 * to stderr and ends the process with status 2.  Any other SIGBUS goes to the action
 * installed before this one, so real bugs still crash as they did.
 *
 * pyggml/format/mapguard.py loads it with ctypes and declares these functions itself.
 */
#ifndef PYGGML_MAPGUARD_H
#define PYGGML_MAPGUARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what is declared here is its ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ABI version, bumped on any incompatible change; mapguard.py refuses another. */
int pyggml_mapguard_abi_version(void);

/* Install the SIGBUS handler (once per process; later calls do nothing).
 * Returns 0, or -errno when sigaction fails. */
int pyggml_mapguard_install(void);

/* Register the mapping [start, start + length) of the file at path, mapped from file
 * offset 0 (so an address's distance from start is its byte offset in the file).
 * path is copied (cut to the first 4 KiB).  Returns the slot to pass to
 * pyggml_mapguard_remove, or -1 when all slots are taken or the arguments are empty. */
int pyggml_mapguard_add(const void *start, size_t length, const char *path);

/* Unregister a slot returned by pyggml_mapguard_add, once its mapping is unmapped.
 * Each slot is removed once; other values are ignored. */
void pyggml_mapguard_remove(int slot);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* PYGGML_MAPGUARD_H */
