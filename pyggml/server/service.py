"""The model a server serves: its slots, the names it answers to, its defaults."""
from __future__ import annotations

import time

from ..errors import UsageError
from ..locate import Located, locate
from .scheduler import Scheduler

# Modelfile / Ollama params-layer names -> runtime.api argument names
OLLAMA_OPTIONS = {"num_predict": "max_tokens", "temperature": "temperature", "top_k": "top_k",
                  "top_p": "top_p", "min_p": "min_p", "seed": "seed", "stop": "stop",
                  "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
                  "presence_penalty": "presence_penalty",
                  "frequency_penalty": "frequency_penalty"}


def sampling_options(options: dict, *, field: str) -> dict:
    """Ollama ``options`` as runtime.api arguments; options that only make sense when
    loading (num_ctx, num_gpu, ...) are accepted and ignored, as the server was started
    with its own; a known option of the wrong type is named by the api's checks."""
    if not isinstance(options, dict):
        raise UsageError(f"{field}: expected an object", argument=field)
    out = {OLLAMA_OPTIONS[k]: v for k, v in options.items() if k in OLLAMA_OPTIONS}
    if out.get("max_tokens") == -2:            # Ollama: fill the context
        out["max_tokens"] = -1
    return out


class Service:
    """The loaded model: ``parallel`` Models of one file (each with its own kv cache),
    behind one scheduler.  On the CPU they share the file's mapped weights and decode
    together (scheduler.py); layers put on a GPU are uploaded once per slot, and such
    slots step one after another."""

    def __init__(self, spec: str, *, parallel: int = 1, n_ctx: int | None = None,
                 n_ctx_total: int | None = None, n_gpu_layers: int = 0,
                 backend: str | None = None, n_threads: int | None = None,
                 alias: str | None = None, located: Located | None = None,
                 type_k: str | int = "f16", type_v: str | int = "f16", use_mmap: bool = True):
        """n_ctx: each slot's context (None: min(4096, the model's)); or n_ctx_total: the
        whole server's, split evenly between the slots (llama-server's -c; 0: the
        model's trained length)."""
        from ..format.shards import GGUFFile
        from ..model.hparams import HParams
        from ..runtime import Model
        if not isinstance(parallel, int) or parallel < 1:
            raise UsageError(f"--parallel {parallel}: expected an integer >= 1",
                             argument="parallel")
        self.located = located or locate(spec)
        self.file = GGUFFile(self.located.path)
        try:
            if n_ctx_total is not None:
                n_ctx = slot_context(n_ctx_total, parallel,
                                     HParams.from_metadata(self.file.metadata).n_ctx_train)
            # the weights are views of one mapping (or of one copy), shared by every slot
            self.models = [Model(self.file, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                                 backend=backend, n_threads=n_threads, type_k=type_k,
                                 type_v=type_v, use_mmap=use_mmap)
                           for _ in range(parallel)]
        except BaseException:
            self.file.close()
            raise
        self.model = self.models[0]             # tokenizer, template, hparams: all the same
        self.name = alias or self.located.name
        self.names = {self.name, self.located.name, self.located.path.name,
                      self.located.path.stem, str(self.located.path), spec}
        self.names |= {n + ":latest" for n in self.names if ":" not in n}
        self.defaults = sampling_options(self.located.params, field="model parameters")
        self.system = self.located.system
        self.created = int(time.time())
        self.scheduler = Scheduler(self.models)

    def check_model(self, name) -> None:
        """A request's ``model`` must be one of this server's names (or absent)."""
        if name is None:
            return
        if not isinstance(name, str):
            raise UsageError("model: expected a string", argument="model")
        if name not in self.names:
            raise ModelNotFound(name)

    def with_system(self, messages: list) -> list:
        """The Modelfile's SYSTEM message first, unless the request brings its own."""
        if self.system is None or any(isinstance(m, dict) and m.get("role") == "system"
                                      for m in messages):
            return messages
        return [{"role": "system", "content": self.system}, *messages]

    def start(self) -> None:
        self.scheduler.start()

    def close(self) -> None:
        if self.scheduler.thread.is_alive():
            self.scheduler.stop()
        self.file.close()


def slot_context(n_ctx_total: int, parallel: int, n_ctx_train: int) -> int:
    """Each slot's share of a server context of n_ctx_total tokens (0: the trained length),
    capped at the trained length, as llama-server's n_ctx_slot."""
    if n_ctx_total < 0:
        raise UsageError(f"-c / --ctx-size {n_ctx_total}: expected >= 0", argument="ctx_size")
    share = (n_ctx_total or n_ctx_train) // parallel
    if share < 1:
        raise UsageError(f"-c / --ctx-size {n_ctx_total} split between {parallel} slots leaves "
                         "none to each: give at least one token per slot", argument="ctx_size")
    return min(share, n_ctx_train)


class ModelNotFound(UsageError):
    """A request names a model this server does not serve (HTTP 404)."""

    def __init__(self, name: str):
        super().__init__(f"the model {name!r} does not exist here", argument="model")
        self.name = name
