"""Up to --parallel requests decoding at once, each in a slot with its own kv cache.

One thread owns every slot's Model (it holds each Model's ``_exclusive`` guard for the
server's life, so nothing else can touch a cache) and loops:

    admit     queued jobs take free slots, each the free slot whose cached tokens share
              the longest prefix with its prompt (the prompt cache: only the tokens after
              that prefix are evaluated); further jobs wait in the queue, in order
    step      every busy slot advances once: a prompt slot evaluates its next N_BATCH
              prompt tokens; a decoding slot samples its next token from its logits
              (api.Generation) and hands the Step to its request
    forward   the tokens just sampled are evaluated in one batched step, giving each
              slot its next logits

New requests join between steps; a cancelled job (its client disconnected) leaves its
slot at the next step, and its cache keeps what it evaluated for a later prompt that
shares it.  A failure in one slot (a bug included) ends that request with its error and
resets only that slot's cache.

The batched step.  ``forward`` runs every decoding slot's token in one call per layer
(runtime.decode_together): the slots are Models of one file, so their layers are handles
of the same mapped weights with a kv cache each, and the C block multiplies all their rows
in one product per weight matrix -- each row in the kernel and order that ggml uses for a
product of one token, so that every request's temperature-0 text is identical to the
text it gets alone -- while each row attends over its own slot's cache.  Prompts are
evaluated slot by slot, N_BATCH tokens per step, between those steps.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time

from ..errors import PyggmlError
from ..runtime import N_BATCH, decode_together
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
        """Evaluate every decoding slot's sampled token in one batched step
        (runtime.decode_together: each weight read once for all slots, each slot's logits
        bit-identical to its own step).  A slot whose token cannot be appended fails
        alone, before the step."""
        ready = []
        for slot in slots:
            try:
                slot.model.check_append([slot.token])
                ready.append(slot)
            except Exception as err:        # noqa: BLE001
                self._fail(slot, err)
        if not ready:
            return
        try:
            logits = decode_together([slot.model for slot in ready], [slot.token for slot in ready])
        except Exception as err:            # noqa: BLE001 - a bug: those requests fail, not the server
            for slot in ready:
                self._fail(slot, err)
            return
        for slot, row in zip(ready, logits):
            slot.logits = row
