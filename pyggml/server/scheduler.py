"""Up to --parallel requests decoding at once, each in a slot with its own kv cache.

One thread owns every slot's Model (it holds each Model's ``_exclusive`` guard for the
server's life, so nothing else can touch a cache) and loops:

    admit     queued jobs take free slots, each the free slot whose cached tokens share
              the longest prefix with its prompt (the prompt cache: only the tokens after
              that prefix are evaluated); further jobs wait in the queue, in order
    step      every busy slot advances once: a prompt slot evaluates its next N_BATCH
              prompt tokens; a decoding slot samples its next token from its logits
              (api.Generation) and hands the Step to its request
    forward   the tokens just sampled are evaluated, giving each slot its next logits

New requests join between steps; a cancelled job (its client disconnected) leaves its
slot at the next step, and its cache keeps what it evaluated for a later prompt that
shares it.  A failure in one slot (a bug included) ends that request with its error and
resets only that slot's cache.

The batched step (the next stage).  ``forward`` is the one place that runs the model
for decoding slots: today a loop of ``model._eval([token])``, one product per slot.
Running all of them as one product per weight matrix ([n_slots, n_embd] activations)
needs from the runtime:

  * one set of weights and per-sequence kv cells: a layer forward that takes (token,
    position, sequence) rows and writes each row's k/v into that sequence's cells, its
    attention reading only those cells (today each Model owns its kv cache, so the slots
    are Models sharing the file's mapped weights);
  * a product whose every output row is summed in the same order as a T=1 product of
    that row alone (the row-by-row dot kernels, not a tiled T>1 kernel that sums in
    another order), so that each request's temperature-0 text stays identical to the
    text it gets alone;
  * logits for one row per sequence (the last token of each), as head_forward gives.

Sampling (api.Generation) and the admission/prompt-cache logic stay as they are.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time

from ..errors import PyggmlError
from ..runtime import N_BATCH
from ..runtime.api import Generation, Request, Step

log = logging.getLogger("pyggml.server")


class Job:
    """One request's passage through the scheduler.  Steps (and at most one error) reach
    the request's event loop through an asyncio queue."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop):
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.cached_tokens = 0              # prompt tokens the slot's cache already held
        self.created = time.perf_counter()
        self.prompt_done: float | None = None
        self.finished: float | None = None

    def emit(self, item: Step | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:                # the event loop is closed: nobody is listening
            self.cancelled.set()

    async def steps(self):
        """The job's Steps as they come, the last with a finish_reason; an error raises."""
        while True:
            item = await self.events.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return


class Slot:
    def __init__(self, index: int, model):
        self.index = index
        self.model = model
        self.job: Job | None = None
        self.generation: Generation | None = None
        self.pending: list[int] = []        # prompt tokens still to evaluate
        self.logits = None
        self.token: int | None = None       # sampled, to be evaluated by forward
        self.last_used = 0.0

    def shared_prefix(self, ids: list[int]) -> int:
        n = 0
        for a, b in zip(self.model.tokens, ids[:-1]):   # the last prompt token is re-evaluated
            if a != b:
                break
            n += 1
        return n

    def start(self, job: Job) -> None:
        keep = self.shared_prefix(job.request.ids)
        self.model.tokens = self.model.tokens[:keep]
        self.job, self.pending, self.logits, self.token = job, job.request.ids[keep:], None, None
        self.generation = Generation(self.model, job.request)
        job.cached_tokens = keep

    def free(self) -> None:
        self.job = self.generation = self.logits = self.token = None
        self.pending = []
        self.last_used = time.perf_counter()


class Scheduler:
    def __init__(self, models: list):
        self.slots = [Slot(i, model) for i, model in enumerate(models)]
        self.queue: collections.deque[Job] = collections.deque()
        self.wake = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="pyggml-scheduler", daemon=True)

    @property
    def n_ctx(self) -> int:
        return self.slots[0].model.n_ctx

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join()

    def submit(self, job: Job) -> None:
        with self.wake:
            self.queue.append(job)
            self.wake.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled.set()
        with self.wake:
            if job in self.queue:
                self.queue.remove(job)
            self.wake.notify()

    def busy(self) -> int:
        return sum(slot.job is not None for slot in self.slots)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        with contextlib.ExitStack() as guards:
            for slot in self.slots:
                guards.enter_context(slot.model._exclusive())
            while True:
                with self.wake:
                    while not self.stopping and not self.queue and not self.busy():
                        self.wake.wait()
                    if self.stopping:
                        break
                    self._admit()
                self._step()
            for slot in self.slots:
                if slot.job is not None:
                    slot.job.emit(PyggmlError("the server is shutting down"))

    def _admit(self) -> None:
        while self.queue:
            free = [slot for slot in self.slots if slot.job is None]
            if not free:
                return
            job = self.queue.popleft()
            if job.cancelled.is_set():
                continue
            ids = job.request.ids
            slot = max(free, key=lambda s: (s.shared_prefix(ids), -s.last_used))
            slot.start(job)

    def _fail(self, slot: Slot, err: BaseException) -> None:
        """Called in an except block: ends that slot's request with err."""
        if not isinstance(err, PyggmlError):          # a bug: its traceback goes to the log
            log.exception("slot %d failed", slot.index)
            err = RuntimeError(f"internal error: {type(err).__name__}: {err}")
        slot.job.emit(err)
        slot.model.tokens = []              # its cache may hold half a step
        slot.free()

    def _step(self) -> None:
        decoding = []
        for slot in self.slots:
            job = slot.job
            if job is None:
                continue
            if job.cancelled.is_set():
                slot.free()
                continue
            try:
                if slot.pending:
                    chunk, slot.pending = slot.pending[:N_BATCH], slot.pending[N_BATCH:]
                    slot.logits = slot.model._eval(chunk)
                    if slot.pending:
                        continue
                    job.prompt_done = time.perf_counter()
                    if job.request.max_tokens == 0:
                        self._finish(slot, Step(-1, "", finish_reason="length"))
                        continue
                step = slot.generation.step(slot.logits)
                if step.finish_reason is not None:
                    self._finish(slot, step)
                else:
                    job.emit(step)
                    slot.token = step.token
                    decoding.append(slot)
            except Exception as err:        # noqa: BLE001 - one request fails, not the server
                self._fail(slot, err)
        self._forward(decoding)

    def _finish(self, slot: Slot, step: Step) -> None:
        slot.job.finished = time.perf_counter()
        slot.job.emit(step)
        slot.free()

    def _forward(self, slots: list[Slot]) -> None:
        """Evaluate each decoding slot's sampled token (the batched step goes here)."""
        for slot in slots:
            try:
                slot.logits = slot.model._eval([slot.token])
            except Exception as err:        # noqa: BLE001
                self._fail(slot, err)
