"""OpenAI-shaped completions on a Model, in llama-cpp-python's habits.

    model = pyggml.load("qwen2.5-0.5b-instruct-q4_k_m.gguf")
    reply = model.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=32)
    print(reply["choices"][0]["message"]["content"])
    for chunk in model.create_completion("Once upon a time", stream=True):
        print(chunk["choices"][0]["text"], end="")

The same dicts (and, with ``stream=True``, iterators of chunks) as llama-cpp-python's
``Llama.create_chat_completion`` / ``create_completion`` and the OpenAI API, so code
written for either switches with one import.  ``pyggml serve`` sends these very dicts.

The pieces, each usable on its own by the server's scheduler:

    chat_request / completion_request   the arguments checked (UsageError naming the
                                        argument) into a Request: prompt ids, sampling
    Generation                          one request's state between forward passes: it is
                                        fed the logits of each step and says what token,
                                        text, logprobs and finish_reason they give
    prefill                             evaluate a prompt on a Model, keeping the prefix
                                        its kv cache already holds (the prompt cache)
    ChatFormat / TextFormat             Generation's steps -> OpenAI chunks and responses

Penalties follow llama.cpp's penalties sampler: over the last ``repeat_last_n`` tokens of
prompt and generation, repeat_penalty divides a positive logit (multiplies a negative
one), then ``frequency_penalty * count + presence_penalty * (count > 0)`` is subtracted;
the rest of the chain is sampler.py's.  ``response_format`` json_object / json_schema
masks, before all of them, the tokens the schema forbids (grammar.py); so does a chat's
``tools`` with tool_choice "required" or a named function, and a chat's reply is parsed
for the tool calls it writes (tools.py).  Logprobs are
those of the model's distribution (log-softmax of the logits before any sampler), as
OpenAI reports them.
"""
from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Iterator

import numpy as np

from ..errors import UsageError
from .grammar import Grammar, schema_of
from .tools import ToolStream, ToolUse, tool_use
from .sampler import Sampler, SamplerSettings

# llama-cpp-python's defaults (create_completion / create_chat_completion)
COMPLETION_DEFAULTS = dict(max_tokens=16, temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)
CHAT_DEFAULTS = dict(max_tokens=None, temperature=0.2, top_p=0.95, top_k=40, min_p=0.05)
MAX_TOP_LOGPROBS = 20                 # OpenAI's limit


# ---------------------------------------------------------------------------- arguments
def _number(name: str, value, *, integer: bool = False, low=None, high=None,
            low_open: bool = False, expected: str = "") -> float | int:
    """value as a number of the right kind, or a UsageError naming the argument."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = expected or ("an integer" if integer else "a number")
        raise UsageError(f"{name}={value!r}: expected {what}", argument=name)
    return value


def _stop_strings(stop) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise UsageError(f"stop={stop!r}: expected a string or a list of strings", argument="stop")
    return [s for s in stop if s]


@dataclasses.dataclass
class Request:
    """One completion, checked: what to evaluate and how to pick each token."""
    ids: list[int]
    max_tokens: int                  # -1: until the end of generation or a full context
    sampling: SamplerSettings
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = dataclasses.field(default_factory=list)
    logprobs: int | None = None      # None: none; k >= 0: the sampled token's and k others'
    grammar: Grammar | None = None   # constrains the tokens (response_format, forced tools)
    tools: ToolUse | None = None     # the tools a chat offers; its reply is parsed for calls


def _request(ids: list[int], n_ctx: int, defaults: dict, *, max_tokens=None,
             temperature=None, top_p=None, top_k=None, min_p=None, repeat_penalty=1.0,
             repeat_last_n=64, presence_penalty=0.0, frequency_penalty=0.0, seed=None,
             stop=None, logprobs=None, top_logprobs=None, response_format=None,
             prompt_argument="prompt", tokenizer=None, tools: ToolUse | None = None) -> Request:
    if not ids:
        raise UsageError("the prompt is empty (and the model adds no BOS token)",
                         argument=prompt_argument)
    if len(ids) >= n_ctx:
        raise UsageError(f"the prompt has {len(ids)} tokens but the context holds {n_ctx}",
                         argument=prompt_argument)
    if max_tokens is None:
        max_tokens = defaults["max_tokens"]
    if max_tokens is None or max_tokens == -1:
        max_tokens = -1
    else:
        max_tokens = _number("max_tokens", max_tokens, integer=True, low=0,
                             expected="an integer >= 0, or -1/null for no limit")
    pick = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p}
    pick = {k: defaults[k] if v is None else v for k, v in pick.items()}
    _number("temperature", pick["temperature"], low=0, expected="a number >= 0 (0 is greedy)")
    _number("top_p", pick["top_p"], low=0, high=1, low_open=True, expected="a number in (0, 1]")
    # llama.cpp reads top_k <= 0 as "keep all"
    pick["top_k"] = max(_number("top_k", pick["top_k"], integer=True), 0)
    _number("min_p", pick["min_p"], low=0, high=1, expected="a number in [0, 1]")
    _number("repeat_penalty", repeat_penalty, low=0, low_open=True, expected="a number > 0")
    _number("repeat_last_n", repeat_last_n, integer=True, low=-1,
            expected="an integer >= 0, or -1 for all tokens")
    if seed is not None:
        seed = _number("seed", seed, integer=True)
        seed = None if seed == -1 else seed
        if seed is not None and seed < 0:
            raise UsageError(f"seed={seed}: expected an integer >= 0, or -1 for a random seed",
                             argument="seed")
    for name, value in (("presence_penalty", presence_penalty),
                        ("frequency_penalty", frequency_penalty)):
        _number(name, value, low=-2, high=2, expected="a number in [-2, 2]")
    # chat: logprobs is a bool and top_logprobs a count; completions: logprobs is the count
    if isinstance(logprobs, bool):
        if top_logprobs is not None:
            _number("top_logprobs", top_logprobs, integer=True, low=0, high=MAX_TOP_LOGPROBS,
                    expected=f"an integer in [0, {MAX_TOP_LOGPROBS}]")
        logprobs = (top_logprobs or 0) if logprobs else None
    elif logprobs is not None:
        logprobs = _number("logprobs", logprobs, integer=True, low=0, high=MAX_TOP_LOGPROBS,
                           expected=f"an integer in [0, {MAX_TOP_LOGPROBS}] (or a bool in chat)")
    settings = SamplerSettings(repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
                               seed=seed, **pick)
    stop = _stop_strings(stop)
    schema = schema_of(response_format)           # compiled now: a bad schema is the caller's
    grammar = Grammar.json(tokenizer, schema) if schema is not None else None
    if tools is not None and tools.grammar is not None:
        if grammar is not None:
            raise UsageError("response_format: cannot constrain a reply that must be a tool "
                             "call (tool_choice required or named, or a template without "
                             "tools) to a JSON schema as well", argument="response_format")
        grammar = tools.grammar
    return Request(list(ids), max_tokens, settings, presence_penalty, frequency_penalty,
                   stop, logprobs, grammar, tools)


def completion_request(model, prompt, **params) -> Request:
    """A /v1/completions request: prompt is text or token ids."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]                     # the OpenAI client sends ["text"] as well
    if isinstance(prompt, str):
        ids = model.tokenize(prompt)
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                          for t in prompt):
        ids = list(prompt)
        bad = [t for t in ids if not 0 <= t < model.hparams.n_vocab]
        if bad:
            raise UsageError(f"prompt: token id {bad[0]} is outside the vocabulary",
                             argument="prompt")
    else:
        raise UsageError("prompt: expected a string or a list of token ids (one prompt: "
                         "n > 1 and several prompts are not supported)", argument="prompt")
    return _request(ids, model.n_ctx, COMPLETION_DEFAULTS, tokenizer=model.tokenizer, **params)


def chat_messages(messages) -> list[dict]:
    """OpenAI messages as the chat template wants them: text parts joined into a string."""
    if not isinstance(messages, list) or not messages:
        raise UsageError("messages: expected a non-empty list of {role, content} objects",
                         argument="messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise UsageError(f"{where}: expected an object with a string 'role'", argument=where)
        content = message.get("content")
        if isinstance(content, list):          # [{"type": "text", "text": ...}, ...]
            texts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text"
                        and isinstance(part.get("text"), str)):
                    raise UsageError(f"{where}.content[{j}]: only text parts are supported",
                                     argument=f"{where}.content")
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None:          # an assistant turn that only called tools
            content = ""
        elif not isinstance(content, str):
            raise UsageError(f"{where}.content: expected a string or a list of text parts",
                             argument=f"{where}.content")
        out.append({**message, "content": content})
    return out


def chat_request(model, messages, *, parse_special_in_content: bool = False, tools=None,
                 tool_choice=None, parallel_tool_calls=None, **params) -> Request:
    """A /v1/chat/completions request: messages (and tools) in the file's chat template."""
    use = tool_use(model.tokenizer, model.chat_template.source, tools, tool_choice,
                   parallel_tool_calls)
    messages = chat_messages(messages)
    if use is not None:
        messages = use.format.messages(messages, use.tools)
    ids = model.chat_tokens(messages, parse_special_in_content=parse_special_in_content,
                            tools=use.template_tools() if use is not None else None)
    return _request(ids, model.n_ctx, CHAT_DEFAULTS, prompt_argument="messages",
                    tokenizer=model.tokenizer, tools=use, **params)


# ---------------------------------------------------------------------------- decoding
def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(logits.max())
    return shifted - math.log(float(np.exp(shifted).sum()))


@dataclasses.dataclass
class Step:
    """What one step of a generation gave: the token, the text it completed (held-back
    bytes of a character or of a possible stop string come later), and whether it ended."""
    token: int
    text: str
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None     # the k most likely (id, logprob)
    finish_reason: str | None = None               # "stop" | "length" | None


class Generation:
    """A request between forward passes.  ``step(logits)`` samples the next token from the
    logits after the last evaluated token and returns a Step; then, unless it finished,
    the caller evaluates ``step.token`` and calls step again.  No forward pass happens here,
    so one caller can run many Generations one after another or in one batch."""

    def __init__(self, model, request: Request):
        from ..text.tokenizer import StreamDecoder
        self.model = model
        self.request = request
        self.tokenizer = model.tokenizer
        # the penalties are applied here, all three as llama.cpp's penalties sampler does;
        # the rest of the chain is the Sampler's
        self.penalize = (request.sampling.repeat_penalty != 1.0
                         or request.presence_penalty != 0 or request.frequency_penalty != 0)
        self.sampler = Sampler(dataclasses.replace(request.sampling, repeat_penalty=1.0))
        self.grammar = request.grammar
        # control tokens that a tool call format writes (Mistral's [TOOL_CALLS]) are text
        # for the parser
        markers = request.tools.format.markers if request.tools is not None else ()
        self.visible = set()
        for marker in markers:
            ids = model.tokenizer.encode(marker, add_special=False, parse_special=True)
            if len(ids) == 1 and not model.tokenizer.token_to_piece(ids[0], False):
                self.visible.add(ids[0])
        self.history = list(request.ids)
        self.generated: list[int] = []
        self.decoder = StreamDecoder(model.tokenizer)
        self.held = ""                   # text that may be the start of a stop string
        self.text = ""                   # text handed out so far
        self.finish_reason: str | None = None

    def _penalties(self, logits: np.ndarray) -> np.ndarray:
        s, r = self.request.sampling, self.request
        n = s.repeat_last_n
        window = self.history if n == -1 else self.history[-n:] if n > 0 else []
        if not window:
            return logits
        ids, counts = np.unique(np.asarray(window), return_counts=True)
        logits = logits.astype(np.float32, copy=True)
        values = logits[ids]
        if s.repeat_penalty != 1.0:
            values = np.where(values > 0, values / s.repeat_penalty, values * s.repeat_penalty)
        # float32 throughout, as llama.cpp's logit -= count * freq + (count > 0) * present
        values = values - (counts.astype(np.float32) * np.float32(r.frequency_penalty)
                           + np.float32(r.presence_penalty))
        logits[ids] = values
        return logits

    def step(self, logits: np.ndarray) -> Step:
        if self.finish_reason is not None:
            raise UsageError("this generation has finished")
        k = self.request.logprobs
        logprob = top = None
        if k is not None:
            lp = _log_softmax(logits)
        allowed = self.grammar.mask(logits) if self.grammar is not None else logits
        token = self.sampler(self._penalties(allowed) if self.penalize else allowed,
                             self.history)
        if self.grammar is not None:
            self.grammar.accept(token)
        if k is not None:
            logprob = float(lp[token])
            best = np.argsort(-lp, kind="stable")[:k] if k else []
            top = [(int(i), float(lp[i])) for i in best]
        self.history.append(token)
        self.generated.append(token)
        if token in self.tokenizer.eog_ids:
            return self._finish(Step(token, "", logprob, top), "stop")
        text = self.held + self.decoder.add(token)
        if token in self.visible:
            text += self.tokenizer.token_to_piece(token, True).decode("utf-8", "replace")
        step = Step(token, "", logprob, top)
        for stop in self.request.stop:
            at = text.find(stop)
            if at >= 0:
                self.held = ""
                step.text = text[:at]
                self.text += step.text
                self.finish_reason = step.finish_reason = "stop"
                return step
        keep = max((n for stop in self.request.stop for n in range(len(stop) - 1, 0, -1)
                    if text.endswith(stop[:n])), default=0)
        step.text, self.held = text[:len(text) - keep], text[len(text) - keep:]
        self.text += step.text
        if self.grammar is not None and self.grammar.finished:    # the grammar is complete
            return self._finish(step, "stop")
        n = self.request.max_tokens
        if len(self.generated) == n or len(self.history) >= self.model.n_ctx:
            return self._finish(step, "length")
        return step

    def _finish(self, step: Step, reason: str) -> Step:
        """The end: what was held back is text after all (no stop string came)."""
        tail = self.held + self.decoder.flush()
        self.held = ""
        step.text += tail
        self.text += tail
        self.finish_reason = step.finish_reason = reason
        return step


def prefill(model, ids: list[int]) -> tuple[np.ndarray, int]:
    """Evaluate ids on model (whose cache the caller holds), reusing the prefix its kv
    cache already holds and re-evaluating at least the last token; -> (logits of the last
    token, how many tokens were evaluated)."""
    keep = 0
    limit = min(len(model.tokens), len(ids) - 1)
    while keep < limit and model.tokens[keep] == ids[keep]:
        keep += 1
    model.tokens = model.tokens[:keep]
    return model._eval(ids[keep:]), len(ids) - keep


def generate_steps(model, request: Request) -> Iterator[Step]:
    """Run one request alone on model: its Steps, the last with a finish_reason."""
    with model._exclusive():
        generation = Generation(model, request)
        logits, _ = prefill(model, request.ids)
        if request.max_tokens == 0:            # the prompt is only evaluated
            yield Step(-1, "", finish_reason="length")
            return
        while True:
            step = generation.step(logits)
            yield step
            if step.finish_reason is not None:
                return
            logits = model._eval([step.token])


# ---------------------------------------------------------------------------- OpenAI shapes
class _Format:
    """The ids and timestamps one response shares across its chunks."""
    prefix = "cmpl"

    def __init__(self, model, model_name: str, request: Request):
        self.model, self.tokenizer, self.request = model, model.tokenizer, request
        self.model_name = model_name
        self.id = f"{self.prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.completion_tokens = 0
        # prompt tokens a server's slot already held (OpenAI's usage detail); None in the
        # Python API, whose dicts are llama-cpp-python's, which has no such field
        self.cached_tokens: int | None = None

    def usage(self) -> dict:
        n = len(self.request.ids)
        usage = {"prompt_tokens": n, "completion_tokens": self.completion_tokens,
                 "total_tokens": n + self.completion_tokens}
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    def _piece(self, token: int) -> bytes:
        return self.tokenizer.token_to_piece(token, False)

    def count(self, step: Step) -> None:
        if step.token >= 0:
            self.completion_tokens += 1


class ChatFormat(_Format):
    prefix = "chatcmpl"
    object_chunk, object_full = "chat.completion.chunk", "chat.completion"

    def __init__(self, model, model_name: str, request: Request):
        super().__init__(model, model_name, request)
        self.tools = ToolStream(request.tools.format) if request.tools is not None else None

    def _logprobs(self, steps: list[Step]) -> dict | None:
        if self.request.logprobs is None:
            return None

        def entry(token, logprob):
            piece = self._piece(token)
            return {"token": piece.decode("utf-8", "replace"), "logprob": logprob,
                    "bytes": list(piece)}
        return {"content": [{**entry(s.token, s.logprob),
                             "top_logprobs": [entry(t, lp) for t, lp in s.top]}
                            for s in steps if s.token >= 0 and s.top is not None]}

    def first_chunk(self) -> dict:
        return self._chunk({"role": "assistant", "content": ""}, None, None)

    def _chunk(self, delta: dict, finish_reason, logprobs) -> dict:
        return {"id": self.id, "object": self.object_chunk, "created": self.created,
                "model": self.model_name,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                             "finish_reason": finish_reason}]}

    @staticmethod
    def _finish_reason(step: Step, calls) -> str | None:
        return "tool_calls" if calls and step.finish_reason == "stop" else step.finish_reason

    def chunks(self, step: Step) -> list[dict]:
        """The chunks of one step (none when it has nothing to say).  With tools, text that
        may be a tool call is held back; at the end the calls come as OpenAI streams them,
        one tool_calls delta per call (its name and all its arguments)."""
        self.count(step)
        text, calls = step.text, []
        if self.tools is not None:
            text = self.tools.add(text)
            if step.finish_reason is not None:
                rest, calls = self.tools.finish()
                text += rest
        out = []
        if text or self.request.logprobs is not None:
            out.append(self._chunk({"content": text} if text else {}, None,
                                   self._logprobs([step])))
        out += [self._chunk({"tool_calls": [call.openai(i)]}, None, None)
                for i, call in enumerate(calls)]
        if step.finish_reason is not None:
            out.append(self._chunk({}, self._finish_reason(step, calls), None))
            out[-1]["usage"] = self.usage()
        return out

    def response(self, steps: list[Step]) -> dict:
        for step in steps:
            self.count(step)
        text = "".join(s.text for s in steps)
        calls = []
        if self.tools is not None:
            text, calls = self.tools.format.parse(text)
        message = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = [call.openai() for call in calls]
        return {"id": self.id, "object": self.object_full, "created": self.created,
                "model": self.model_name,
                "choices": [{"index": 0, "message": message,
                             "logprobs": self._logprobs(steps),
                             "finish_reason": self._finish_reason(steps[-1], calls)}],
                "usage": self.usage()}


class TextFormat(_Format):
    object_chunk = object_full = "text_completion"

    def _logprobs(self, steps: list[Step], offset: int) -> dict | None:
        if self.request.logprobs is None:
            return None
        steps = [s for s in steps if s.token >= 0]
        tokens = [self._piece(s.token).decode("utf-8", "replace") for s in steps]
        offsets = []
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        return {"tokens": tokens, "token_logprobs": [s.logprob for s in steps],
                "top_logprobs": [{self._piece(t).decode("utf-8", "replace"): lp
                                  for t, lp in s.top} for s in steps],
                "text_offset": offsets}

    def _body(self, text: str, finish_reason, logprobs, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model_name,
                "choices": [{"text": text, "index": 0, "logprobs": logprobs,
                             "finish_reason": finish_reason}]}

    def chunks(self, step: Step) -> list[dict]:
        self.count(step)
        if not step.text and step.finish_reason is None and self.request.logprobs is None:
            return []
        chunk = self._body(step.text, step.finish_reason, self._logprobs([step], 0),
                           self.object_chunk)
        if step.finish_reason is not None:
            chunk["usage"] = self.usage()
        return [chunk]

    def response(self, steps: list[Step]) -> dict:
        for step in steps:
            self.count(step)
        body = self._body("".join(s.text for s in steps), steps[-1].finish_reason,
                          self._logprobs(steps, 0), self.object_full)
        body["usage"] = self.usage()
        return body


# ---------------------------------------------------------------------------- Model methods
def _model_name(model) -> str:
    return str(model.file.path)


def refuse_unsupported(params: dict) -> None:
    """Refuse, by name, what this version cannot honour rather than ignore it."""
    n = params.pop("n", 1)
    if n != 1:
        raise UsageError(f"n={n!r}: only one choice per request (n=1) is supported",
                         argument="n")


def _run(model, fmt: _Format, request: Request, stream: bool, first: dict | None = None):
    steps = generate_steps(model, request)
    if not stream:
        return fmt.response(list(steps))

    def chunks():
        if first is not None:
            yield first
        for step in steps:
            yield from fmt.chunks(step)
    return chunks()


def create_completion(self, prompt, max_tokens: int | None = 16, *, stream: bool = False,
                      model: str | None = None, **params):
    """llama-cpp-python's ``Llama.create_completion``: a ``text_completion`` dict, or with
    stream=True an iterator of its chunks.  Sampling: temperature, top_p, top_k, min_p,
    repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, seed, stop,
    logprobs (a count of alternatives)."""
    refuse_unsupported(params)
    request = completion_request(self, prompt, max_tokens=max_tokens, **params)
    fmt = TextFormat(self, model or _model_name(self), request)
    return _run(self, fmt, request, stream)


def create_chat_completion(self, messages, *, stream: bool = False, model: str | None = None,
                           parse_special_in_content: bool = False, **params):
    """llama-cpp-python's ``Llama.create_chat_completion``: a ``chat.completion`` dict, or
    with stream=True an iterator of ``chat.completion.chunk`` dicts (the first carries the
    role).  The same sampling arguments as create_completion, with max_tokens (None: until
    the end of generation; max_completion_tokens is its new OpenAI name), logprobs (bool)
    and top_logprobs (a count); tools, tool_choice and parallel_tool_calls as OpenAI's
    (tools.py), the calls coming back in message.tool_calls."""
    if "max_completion_tokens" in params:
        newer = params.pop("max_completion_tokens")
        if params.get("max_tokens") is None:
            params["max_tokens"] = newer
    refuse_unsupported(params)
    request = chat_request(self, messages, parse_special_in_content=parse_special_in_content,
                           **params)
    fmt = ChatFormat(self, model or _model_name(self), request)
    return _run(self, fmt, request, stream, first=fmt.first_chunk() if stream else None)
