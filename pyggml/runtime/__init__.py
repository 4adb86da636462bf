"""A runnable model: GGUF file -> hparams, tokenizer, quantized weights -> text.

    model = pyggml.load("qwen2.5-1.5b-instruct-q4_k_m.gguf")
    for piece in model.generate("Hello", max_tokens=32):
        print(piece, end="")

``load`` is the path of one generate call read straight down: open the file (any
shard of a split set), read the hyperparameters (pyggml.model), build the tokenizer
(pyggml.text), take zero-copy views of the weights, place the layers on devices
(offload.py, pyggml.backends), each allocating its layers' kv caches.  No weight is
dequantized.

    sampler.py    the next token from the logits (llama.cpp's chain)
    offload.py    which layers run where (--n-gpu-layers), as a plan
    stats.py      load time, memory, speeds: the stats block of `generate`
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import PyggmlWarning, UsageError
from ..model.hparams import HParams
from ..model.weights import load_weights
from .offload import host_tensors, plan_offload
from .sampler import Sampler, SamplerSettings
from .stats import Stats, available_memory_bytes, rss_bytes

DEFAULT_N_CTX = 4096
# prompt tokens per forward call: llama.cpp's default n_ubatch, so that a long prompt is cut
# where llama.cpp cuts it (which kernel multiplies a row depends on the rows in the call)
N_BATCH = 512


class Model:
    """A model with one context (kv cache + the tokens it holds), like llama.cpp's llama_context."""

    def __init__(self, gguf, *, n_ctx: int | None = None, n_gpu_layers: int = 0,
                 backend: str | None = None, n_threads: int | None = None, gpu=None,
                 type_k: str | int = "f16", type_v: str | int = "f16", use_mmap: bool = True):
        from ..backends.cpu import cpu_device
        from ..text.chat import ChatTemplate
        from ..text.tokenizer import Tokenizer
        started = time.perf_counter()
        self.file = gguf
        self.hparams = hp = HParams.from_metadata(gguf.metadata, path=gguf.path)
        host = host_tensors(gguf.tensors, hp.n_layer, n_gpu_layers)
        self.use_mmap = use_mmap
        if not use_mmap:                          # before the weights take their views
            check_memory(sum(gguf.tensors[name].nbytes for name in host),
                         "--no-mmap / use_mmap=False: the weights the CPU reads are {} to copy "
                         "into memory", "load the model mapped (the default), which copies "
                         "nothing", argument="use_mmap")
            gguf.read_into_memory(host)
        self.weights = w = load_weights(gguf, hp)      # before the (slower) tokenizer: a file
        self.tokenizer = Tokenizer.from_metadata(gguf.metadata)     # it refuses fails fast
        self.n_ctx = context_size(n_ctx, hp.n_ctx_train)
        freq_factors = w.rope_freq_factors(self.n_ctx, hp.n_ctx_orig)
        cache_types = {"type_k": kv_cache_type(type_k, "type_k", hp.head_dim),
                       "type_v": kv_cache_type(type_v, "type_v", hp.head_dim)}
        blocks = [dataclasses.replace(hp.block(i, qkv_bias=layer.bq is not None,
                                               freq_factors=freq_factors), **cache_types)
                  for i, layer in enumerate(w.layers)]
        self.host = cpu_device(backend, n_threads, blocks)
        self.kernels = self.host.kernels

        # place layers: the last n_gpu_layers on the GPU (llama.cpp's semantics, see offload.py)
        self.type_k, self.type_v = cache_types["type_k"], cache_types["type_v"]
        self.kv_bytes = sum(block.kv_cache_bytes(self.n_ctx) for block in blocks)   # all layers
        self.plan = plan_offload(hp, w, n_gpu_layers, self.n_ctx,
                                 kv_per_layer=blocks[0].kv_cache_bytes(self.n_ctx))
        check_memory(self.plan.cpu_kv_bytes, f"a context of {self.n_ctx} tokens needs {{}} of kv "
                     "cache", "pass a smaller n_ctx / --ctx-size")
        if self.n_ctx > hp.n_ctx_train:            # works, but llama.cpp warns, and so do we
            warnings.warn(f"a context of {self.n_ctx} tokens is longer than the "
                          f"{hp.n_ctx_train} the model was trained on: text beyond that may "
                          "degrade", PyggmlWarning, stacklevel=3)
        hp.warn_ignored(self.n_ctx)
        self.gpu = None
        if self.plan.n_gpu_layers or self.plan.output_on_gpu:
            if gpu is None:
                from ..backends.cuda import CudaDevice
                gpu = CudaDevice(hp, max_batch=N_BATCH)
            gpu.reserve(self.plan.gpu_bytes)       # fails early, naming bytes needed and free
            self.gpu = gpu
        self.layers = []                            # (device, that device's handle of the layer)
        for i, (layer, block) in enumerate(zip(w.layers, blocks)):
            device = self.gpu if self.plan.on_gpu(i) else self.host
            self.layers.append((device, device.upload_layer(layer, block, self.n_ctx)))
        head_device = self.gpu if self.plan.output_on_gpu else self.host
        self.head = (head_device, head_device.upload_head(w.output_norm, w.output, hp.head()))
        if use_mmap:
            gguf.populate(host)
        self.tokens: list[int] = []               # what the kv caches hold, in order
        self._in_use = threading.Lock()           # held while a call or generator uses the cache

        tok = self.tokenizer
        self.chat_template = ChatTemplate(
            gguf.metadata.get("tokenizer.chat_template"),
            bos_token=tok.decode([tok.bos_id], special=True) if tok.bos_id is not None else "",
            eos_token=tok.decode([tok.eos_id], special=True) if tok.eos_id is not None else "")
        self.stats = Stats(load_s=time.perf_counter() - started, rss_after_load=rss_bytes())

    def device_report(self) -> dict[str, str]:
        """Rows for the stats block: kernels, placement, GPU memory."""
        rows = {"CPU kernels": self.kernels.description, "placement": self.plan.describe(),
                "CPU weights": "read in place (the file mapped)" if self.use_mmap
                               else "copied into memory (--no-mmap)",
                "kv cache": f"{self.kv_bytes / (1 << 20):,.2f} MiB (K {self.type_k}, "
                            f"V {self.type_v}, {self.n_ctx} positions)"}
        if self.gpu is not None:
            rows.update(self.gpu.memory_report())
        return rows

    # ------------------------------------------------------------------ text <-> ids
    def tokenize(self, text: str, special: bool = False, add_special: bool = True) -> list[int]:
        """Token ids of text (BOS/EOS added as the file asks when add_special)."""
        return self.tokenizer.encode(text, add_special=add_special, parse_special=special)

    def detokenize(self, ids, special: bool = False) -> str:
        return self.tokenizer.decode(ids, special=special)

    # ------------------------------------------------------------------ forward
    def check_append(self, tokens: list[int]) -> None:
        """Refuse tokens that do not fit after self.tokens or are not in the vocabulary."""
        n_vocab = self.hparams.n_vocab
        if len(self.tokens) + len(tokens) > self.n_ctx:
            raise UsageError(f"{len(self.tokens) + len(tokens)} tokens do not fit in the context "
                             f"of {self.n_ctx} (pass a larger n_ctx / --ctx-size)")
        bad = [t for t in tokens if not 0 <= t < n_vocab]
        if bad:
            raise UsageError(f"token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})")

    def _embed(self, tokens: list[int]) -> np.ndarray:
        """The hidden state of tokens entering the first layer, on the CPU."""
        self.file.check_unchanged()      # the weights are views of the file: it must still be whole
        x = self.host.embed(self.weights.token_embd, np.asarray(tokens, dtype=np.int64))
        if self.hparams.embd_scale != 1.0:          # gemma3: ggml_scale by sqrtf(n_embd)
            x *= np.float32(self.hparams.embd_scale)
        return x

    def _forward(self, tokens: list[int], all_logits: bool) -> np.ndarray:
        """Run tokens through the model after self.tokens; -> logits (T or 1, n_vocab)."""
        self.check_append(tokens)
        pos0 = len(self.tokens)
        x = self._embed(tokens)
        where = self.host                           # the embedding lookup runs on the CPU
        for device, layer in self.layers:
            if device is not where:                 # only the hidden state crosses devices
                x, where = device.to_device(where.to_host(x)), device
            x = device.layer_forward(layer, x, pos0)
        self.tokens.extend(tokens)
        device, head = self.head
        if device is not where:
            x = device.to_device(where.to_host(x))
        return device.head_forward(head, x, all_logits)

    @contextlib.contextmanager
    def _exclusive(self):
        """One sequence at a time: the kv cache holds one context, so a second generator or
        a second thread would silently corrupt the first one's.  Refuse it instead."""
        if not self._in_use.acquire(blocking=False):
            raise UsageError("this Model is in use: a generate()/chat() generator is still open "
                             "(finish it or call its close()) or another thread is running it; "
                             "a Model holds one sequence at a time, so load a second Model for "
                             "a second sequence")
        try:
            yield
        finally:
            self._in_use.release()

    def eval(self, tokens: list[int], *, all_logits: bool = False,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Append tokens to the context in batches; -> logits of the last (or every) token.
        ``progress(done, total)`` is called after each batch."""
        with self._exclusive():
            return self._eval(tokens, all_logits, progress)

    def _eval(self, tokens: list[int], all_logits: bool = False,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        outputs = []
        for start in range(0, len(tokens), N_BATCH):
            batch = tokens[start:start + N_BATCH]
            last = start + N_BATCH >= len(tokens)
            if all_logits or last:
                outputs.append(self._forward(batch, all_logits))
            else:
                self._forward(batch, False)
            if progress is not None:
                progress(start + len(batch), len(tokens))
        return np.concatenate(outputs) if all_logits else outputs[-1][0]

    def reset(self) -> None:
        with self._exclusive():
            self.tokens = []

    def logits(self, ids) -> np.ndarray:
        """float32 (len(ids), n_vocab): the logits after each token, from a fresh context."""
        ids = [int(t) for t in ids]
        if not ids:
            raise UsageError("logits() needs at least one token")
        with self._exclusive():
            self.tokens = []
            return self._eval(ids, all_logits=True)

    # ------------------------------------------------------------------ generation
    def generate_tokens(self, prompt: str | bytes | list[int], max_tokens: int = 128, *,
                        settings: SamplerSettings | None = None, special: bool = False,
                        progress: Callable[[int, int], None] | None = None,
                        **sampler_kwargs) -> Iterator[int]:
        """Stream the ids of tokens continuing prompt (text, bytes, or token ids).

        Stops after an end-of-generation token (which is yielded), after max_tokens
        (0: none, the prompt is only evaluated; -1: no limit, as llama.cpp's -n -1), or
        when the context is full.  The kv cache keeps the common prefix with the
        previous call, so a multi-turn chat only evaluates the new turn.
        ``progress(done, total)`` follows the prompt's evaluation batch by batch.
        While the generator is open, the Model refuses other calls (see _exclusive).
        """
        if max_tokens < -1:
            raise UsageError(f"max_tokens must be >= 0, or -1 for no limit; got {max_tokens}")
        sampler = Sampler(settings or SamplerSettings(**sampler_kwargs))
        ids = (self.tokenize(prompt, special=special) if isinstance(prompt, (str, bytes))
               else list(prompt))
        if not ids:
            raise UsageError("the prompt is empty (and the model adds no BOS token)")
        if len(ids) >= self.n_ctx:
            raise UsageError(f"the prompt has {len(ids)} tokens but the context holds "
                             f"{self.n_ctx} (pass a larger n_ctx / --ctx-size)")
        with self._exclusive():
            yield from self._generate(ids, max_tokens, sampler, progress)

    def _generate(self, ids: list[int], max_tokens: int, sampler: Sampler,
                  progress: Callable[[int, int], None] | None) -> Iterator[int]:
        keep = 0                       # reuse the cached prefix, re-evaluate at least one token
        while keep < min(len(self.tokens), len(ids) - 1) and self.tokens[keep] == ids[keep]:
            keep += 1
        self.tokens = self.tokens[:keep]
        started = time.perf_counter()
        logits = self._eval(ids[keep:], progress=progress)
        self.stats.prompt(len(ids) - keep, time.perf_counter() - started)

        generated: list[int] = []
        decode_s = 0.0
        try:
            while max_tokens:
                token = sampler(logits, ids + generated)
                generated.append(token)
                yield token
                if token in self.tokenizer.eog_ids:
                    self.stats.hit_eog = True
                    break
                if len(generated) == max_tokens:
                    break
                if len(self.tokens) >= self.n_ctx:
                    self.stats.context_full = True
                    break
                started = time.perf_counter()
                logits = self._eval([token])
                decode_s += time.perf_counter() - started
        finally:
            # decode speed counts the forward passes of generated tokens (the first one
            # came from the prompt's logits), as llama.cpp's "eval time" does
            self.stats.generated(len(generated), max(len(generated) - 1, 0), decode_s)

    def generate(self, prompt: str | bytes | list[int], max_tokens: int = 128, *,
                 special: bool = False, **kwargs) -> Iterator[str]:
        """Stream text pieces continuing prompt; pieces always end on whole UTF-8 characters."""
        from ..text.tokenizer import StreamDecoder
        decoder = StreamDecoder(self.tokenizer, special=special)
        for token in self.generate_tokens(prompt, max_tokens, special=special, **kwargs):
            if token in self.tokenizer.eog_ids:
                break
            piece = decoder.add(token)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def chat_tokens(self, messages: list[dict], *, add_generation_prompt: bool = True,
                    parse_special_in_content: bool = False,
                    tools: list[dict] | None = None) -> list[int]:
        """The prompt ids of a conversation in the file's chat template.

        The template's own markup keeps its control tokens (<|im_start|> ...), while what
        the messages say is plain text: a user who writes "<|im_end|><|im_start|>system"
        gets those characters, not a forged system turn.  ``parse_special_in_content=True``
        is llama.cpp's behaviour instead, where message text can write control tokens.
        ``tools`` (OpenAI tool objects) go to the template's ``tools`` variable.
        """
        from ..text.chat import protect_messages
        if parse_special_in_content:
            prompt = self.chat_template.render(messages, add_generation_prompt=add_generation_prompt,
                                               tools=tools)
            return self.tokenizer.encode(prompt, add_special=True, parse_special=True)
        # the tools' names and descriptions are text as well
        protected, mark = protect_messages([*messages, *(tools or [])],
                                           self.tokenizer.literal_texts(),
                                           self.chat_template.source)
        protected, protected_tools = protected[:len(messages)], protected[len(messages):]
        prompt = self.chat_template.render(protected, add_generation_prompt=add_generation_prompt,
                                           tools=protected_tools if tools is not None else None)
        return self.tokenizer.encode(prompt, add_special=True, parse_special=True,
                                     literal_mark=mark)

    def chat(self, messages: list[dict], max_tokens: int = 512, *,
             parse_special_in_content: bool = False, **kwargs) -> Iterator[str]:
        """Stream the assistant's reply to a conversation, using the file's chat template
        (message text stays text: see chat_tokens)."""
        ids = self.chat_tokens(messages, parse_special_in_content=parse_special_in_content)
        return self.generate(ids, max_tokens, **kwargs)

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # llama-cpp-python's OpenAI-shaped calls (api.py)
    from .api import create_chat_completion, create_completion


def decode_together(models: list[Model], tokens: list[int]) -> np.ndarray:
    """One decode step of several sequences at once: models[i] (each with its own kv cache,
    all Models of one file) appends tokens[i].  -> logits (n, n_vocab), row i bit-identical
    to models[i]._eval([tokens[i]]).

    With the C block on the CPU (the default) this is one call per layer that reads each
    weight once for every sequence, which is what makes n sequences cost less than n
    single steps (decoding is bound by reading the weights); each row is multiplied as
    alone, since ggml's kernel, and so the bits, depend on the number of rows.  Models
    with layers on a GPU, or on the numba backend, step one after another.
    The callers hold each Model's _exclusive guard (the server's scheduler does)."""
    from ..backends.cpu import CBlockDevice
    for model, token in zip(models, tokens):
        model.check_append([token])
    first = models[0]
    together = (len(models) > 1 and all(isinstance(m.host, CBlockDevice) and m.gpu is None
                                        and m.file is first.file for m in models))
    if not together:
        return np.stack([model._eval([token]) for model, token in zip(models, tokens)])
    positions = tuple(len(model.tokens) for model in models)
    host = first.host
    x = first._embed(tokens)
    for i in range(len(first.layers)):
        x = host.layer_forward_rows([model.layers[i][1] for model in models], x, positions)
    for model, token in zip(models, tokens):
        model.tokens.append(token)
    return host.head_forward_rows(first.head[1], x)


def context_size(n_ctx: int | None, n_ctx_train: int) -> int:
    """The context length to allocate, with llama.cpp's meanings: None -> min(4096, trained),
    0 -> the trained length."""
    if n_ctx is None:
        return min(DEFAULT_N_CTX, n_ctx_train)
    if n_ctx < 0:
        raise UsageError(f"n_ctx / --ctx-size must be >= 0 (0: the model's {n_ctx_train}), "
                         f"got {n_ctx}")
    return n_ctx or n_ctx_train


def check_memory(n_bytes: int, needs: str, remedy: str, argument: str | None = None) -> None:
    """Refuse up front what would not fit in the memory this machine has available, rather
    than fail (or swap) later: needs is the message's start, {} where the size goes."""
    available = available_memory_bytes()
    if available is not None and n_bytes > available:
        gib = 1 << 30
        raise UsageError(f"{needs.format(f'{n_bytes / gib:,.2f} GiB')}, but only "
                         f"{available / gib:,.2f} GiB of memory is available: {remedy}",
                         argument=argument)


def kv_cache_type(value: str | int, argument: str, head_dim: int) -> str:
    """A kv cache type as llama.cpp's --cache-type-k/-v names it ("f16", "q8_0", "q4_0",
    any case) or as llama-cpp-python's type_k/type_v gives it (ggml type ids 1, 8, 2)."""
    from ..model.arch import KV_CACHE_TYPES
    option = "--cache-type-" + argument[-1]
    by_id = {type_id: name for name, (type_id, _, _) in KV_CACHE_TYPES.items()}
    if isinstance(value, str) and value.lower() in KV_CACHE_TYPES:
        name = value.lower()
    elif isinstance(value, int) and not isinstance(value, bool) and value in by_id:
        name = by_id[value]
    else:
        raise UsageError(f"{argument} / {option}: unsupported kv cache type {value!r}; pyggml "
                         f"runs {', '.join(KV_CACHE_TYPES)} (or llama.cpp's type ids "
                         f"{', '.join(str(i) for i in by_id)})", argument=argument)
    numbers = KV_CACHE_TYPES[name][1]
    if head_dim % numbers:
        raise UsageError(f"{argument} / {option} {name}: this model's heads have {head_dim} "
                         f"numbers, not a multiple of {name}'s blocks of {numbers} (llama.cpp "
                         f"refuses it too)", argument=argument)
    return name


def load(path, *, n_ctx: int | None = None, n_gpu_layers: int = 0, backend: str | None = None,
         n_threads: int | None = None, type_k: str | int = "f16",
         type_v: str | int = "f16", use_mmap: bool = True) -> Model:
    """Open a GGUF model (a file or any shard of a split set) ready to run.  use_mmap=False
    (llama.cpp's --no-mmap) copies the weights the CPU reads into memory at load instead
    of reading them in place: a longer load, no page cache shared with other processes,
    and faster decode where one thread's reads of the mapped file are the limit
    (docs/performance.md)."""
    from ..format.shards import GGUFFile
    gguf = GGUFFile(path)
    try:
        return Model(gguf, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, backend=backend,
                     n_threads=n_threads, type_k=type_k, type_v=type_v, use_mmap=use_mmap)
    except BaseException:
        gguf.close()
        raise
