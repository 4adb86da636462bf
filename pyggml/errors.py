"""One exception hierarchy for all of pyggml.

Every error pyggml raises on purpose is a ``PyggmlError``.  The subclasses say
which layer refused the input, and the message says what a user can do about
it: the file, the byte offset and the field where that makes sense.

    PyggmlError
    ├── GGUFError              a GGUF file (or split set) is malformed or unsupported
    │   ├── GGUFMagicError         not a GGUF file at all (no "GGUF" magic)
    │   ├── GGUFVersionError       a version we cannot read: 0, 1, > 3, big-endian
    │   ├── GGUFTruncatedError     a length, count or tensor reaches past the end of the file
    │   ├── GGUFMetadataError      a key/value pair is invalid (empty or duplicate key, bad type, ...)
    │   ├── GGUFTensorError        a tensor description is invalid (name, dims, type, placement)
    │   ├── GGUFSplitError         shards missing, out of order or inconsistent
    │   ├── GGUFChangedError       a file changed on disk while pyggml had it open (reopen it)
    │   └── TensorNotFoundError    no tensor by that name (also a KeyError)
    ├── UnsupportedTypeError   a tensor's ggml type has no implementation here
    ├── ModelError             metadata or tensors do not describe a model we can run
    ├── TokenizerError         the vocabulary is missing or inconsistent
    ├── BackendError           a compute backend (C library, CUDA device) is unusable
    └── UsageError             a bad argument from the caller (CLI or API)

    PyggmlWarning              something works but may not do what the user expects
                               (a context longer than the model was trained for, ...)
"""
from __future__ import annotations


class PyggmlError(Exception):
    """Base class of every error pyggml raises deliberately."""


class GGUFError(PyggmlError):
    """A GGUF file or split set is malformed or uses something unsupported.

    ``path``, ``offset`` (absolute byte offset in that file) and ``field`` (what was
    being read) are kept as attributes and folded into the message, so that
    ``str(err)`` reads like ``model.gguf: offset 24: kv[3].key: string length ...``.
    """

    def __init__(self, message: str, *, path=None, offset: int | None = None,
                 field: str | None = None):
        self.path = None if path is None else str(path)
        self.offset = offset
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if offset is not None:
            where.append(f"offset {offset}")
        if field:
            where.append(field)
        super().__init__(": ".join(where + [message]))


class GGUFMagicError(GGUFError):
    """The file does not start with the 4 bytes ``GGUF``: not a GGUF file."""


class GGUFVersionError(GGUFError):
    """The GGUF version is not 2 or 3, or the file is big-endian (its version reads byte-swapped)."""


class GGUFTruncatedError(GGUFError):
    """A string, array, count or tensor reaches past the end of the file (truncated or forged)."""


class GGUFMetadataError(GGUFError):
    """A metadata key/value pair is invalid: empty or duplicate key, unknown value type,
    arrays nested too deep, a ``general.alignment`` that is not a power of two, ..."""


class GGUFTensorError(GGUFError):
    """A tensor description is invalid: name too long or duplicated, too many or negative
    dims, a removed type, rows not a whole number of blocks, data misaligned or overlapping."""


class GGUFSplitError(GGUFError):
    """A split set (``name-00001-of-00003.gguf`` ...) has missing, misnumbered or
    inconsistent shards.  pyggml never returns part of a model."""


class GGUFChangedError(GGUFError):
    """A file that pyggml has mapped changed size or modification time since it was opened:
    another process truncated it or rewrote it in place, so its tensor bytes can no longer
    be trusted (or read at all).  Reopen it.  A file replaced by rename is not this error:
    the old file stays mapped, whole."""


class TensorNotFoundError(GGUFError, KeyError):
    """No tensor of that name in the file or split set.  Also a ``KeyError``."""

    __str__ = GGUFError.__str__


class UnsupportedTypeError(PyggmlError):
    """A tensor uses a ggml type that pyggml can read but not decode or multiply."""


class ModelError(PyggmlError):
    """The file's metadata or tensors do not describe a model pyggml can run."""


class TokenizerError(PyggmlError):
    """The vocabulary in the file is missing or cannot be used."""


class BackendError(PyggmlError):
    """A compute backend cannot be used: no native library, no CUDA device, no memory."""


class UsageError(PyggmlError):
    """A caller passed an argument that cannot work (a prompt longer than the context, ...).
    ``argument`` names the API argument at fault where there is one, so that the CLI can
    name its own option for it."""

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class PyggmlWarning(UserWarning):
    """Works, but may not do what the user expects (the CLI prints it as one line)."""
