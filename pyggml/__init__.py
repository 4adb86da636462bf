"""pyggml: load, run and study GGUF models from Python.

    pyggml.open(path)            a GGUF file or split set: metadata, tensor index, zero-copy views
    pyggml.load(path)            a runnable model: tokenize, logits, generate
    pyggml.load_tokenizer(path)  the tokenizer of any GGUF (vocabulary-only files too)

Heavy modules (numba kernels, the model) are imported on first use, so that
``import pyggml`` stays cheap for scripts that only read metadata.
"""
from .errors import (BackendError, GGUFError, ModelError, PyggmlError, TokenizerError,
                     UnsupportedTypeError, UsageError)

__version__ = "0.1.0"

__all__ = ["open", "load", "load_tokenizer", "PyggmlError", "GGUFError", "UnsupportedTypeError", "ModelError",
           "TokenizerError", "BackendError", "UsageError"]


def open(path):  # noqa: A001  (pyggml.open, like the built-in, opens a file)
    """Open a GGUF file, or a whole split set from any of its shards, without reading
    tensor data: returns a ``pyggml.format.shards.GGUFFile`` (metadata, tensor index,
    zero-copy views).  Raises a ``GGUFError`` subclass for a malformed file or set."""
    from .format.shards import GGUFFile
    return GGUFFile(path)


def load(path, *, n_ctx: int | None = None, n_gpu_layers: int = 0, backend: str | None = None,
         n_threads: int | None = None, type_k: str | int = "f16", type_v: str | int = "f16",
         use_mmap: bool = True):
    """Load a model ready to run from a GGUF file or any shard of a split set:
    returns a ``pyggml.runtime.Model`` (tokenize, logits, generate).  Weights stay quantized
    on the file's map (``use_mmap=False``: in a copy, as llama.cpp's --no-mmap); ``n_ctx``
    is the context length (None: min(4096, the model's); 0: the model's); ``n_gpu_layers``
    puts the last N layers on a CUDA GPU (-1: all); ``type_k``, ``type_v``: the kv cache's
    types, "f16" (default), "q8_0" or "q4_0" (or llama-cpp-python's ggml type ids), as
    llama.cpp's --cache-type-k/-v (a quantized V: flash attention, as llama.cpp requires;
    the GPU runs f16 only)."""
    from .runtime import load as load_model
    return load_model(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, backend=backend,
                      n_threads=n_threads, type_k=type_k, type_v=type_v, use_mmap=use_mmap)


def load_tokenizer(path):
    """The tokenizer of a GGUF file (any shard of a split set, or a vocabulary-only file):
    ``encode(text, add_special=True, parse_special=False) -> ids``, ``decode(ids)``,
    ``token_to_piece(id)``, as llama.cpp tokenizes with the same file.  Raises a
    TokenizerError for a vocabulary pyggml cannot read, naming its kind."""
    from .text.tokenizer import Tokenizer
    with open(path) as gguf:
        return Tokenizer.from_metadata(gguf.metadata)
