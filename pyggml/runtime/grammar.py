"""Structured output: a JSON schema that constrains sampling token by token (llguidance).

    grammar = JsonGrammar(model.tokenizer, schema)     # UsageError if it cannot compile
    logits = grammar.mask(logits)                       # tokens the schema forbids -> -inf
    grammar.accept(token)                               # after sampling it

Why llguidance (Microsoft's Low-level Guidance, the engine llama.cpp itself links as
LLAMA_LLGUIDANCE): of the three maintained engines it is the one that installs from PyPI
on Python 3.11 with nothing else (one abi3 wheel, no dependencies; xgrammar's wheel
requires torch), it computes each step's mask lazily (a lexer and an Earley parser
walking the token trie) instead of compiling an index over the whole vocabulary per
schema up front, and its JSON-schema support is the broadest ($ref, anyOf, patterns,
formats), with errors that name what it cannot compile.  Measured on SmolLM2's 49152
tokens (2 busy cores): the vocabulary is read once per model in about 2 s, a schema
compiles in about 30-40 ms, and a mask costs a median 0.07 ms per token (the first
step of a request about 20 ms), against about 150 ms for the forward pass of a token.
Without the package, a request with a JSON ``response_format`` is a UsageError (400).

The vocabulary goes to llguidance as each token's bytes (control tokens marked with a
leading 0xFF byte, as llguidance's own llama.cpp adapter marks them, so the grammar
never produces them as text) plus pyggml's tokenizer for its own use; the tokens that end
generation are the ones it may sample when the JSON value is complete.
"""
from __future__ import annotations

import json
import threading
import weakref

import numpy as np

from ..errors import UsageError

_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _llguidance():
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401 - the mask helpers
    except ImportError:
        raise UsageError("response_format: structured output needs the llguidance package "
                         "(pip install 'pyggml[serve]' or pip install llguidance)",
                         argument="response_format") from None
    return llguidance


class _Vocabulary:
    """What llguidance's TokenizerWrapper reads from a tokenizer."""

    def __init__(self, tokenizer):
        from ..text.tokenizer import ATTR_CONTROL
        self._tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_id
        self.bos_token_id = tokenizer.bos_id
        self.tokens = [(b"\xff" if tokenizer.attrs[i] & ATTR_CONTROL else b"")
                       + tokenizer.token_to_piece(i, True) for i in range(tokenizer.n_vocab)]
        self.special_token_ids = [i for i in range(tokenizer.n_vocab)
                                  if tokenizer.attrs[i] & ATTR_CONTROL]

    def __call__(self, text: bytes) -> list[int]:
        return self._tokenizer.encode(text, add_special=False, parse_special=False)


def _lltokenizer(tokenizer):
    """llguidance's view of a vocabulary: built once per tokenizer (about a second)."""
    ll = _llguidance()
    with _lock:
        if tokenizer not in _tokenizers:
            wrapper = ll.TokenizerWrapper(_Vocabulary(tokenizer))
            _tokenizers[tokenizer] = ll.LLTokenizer(wrapper, eos_token=sorted(tokenizer.eog_ids))
        return _tokenizers[tokenizer]


def schema_of(response_format) -> dict | None:
    """The JSON schema an OpenAI ``response_format`` asks for; None for plain text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise UsageError("response_format: expected an object such as {\"type\": "
                         "\"json_object\"}", argument="response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise UsageError("response_format.json_schema: expected {\"name\": ..., "
                             "\"schema\": {...}}", argument="response_format.json_schema")
        return spec.get("schema", {})
    raise UsageError(f"response_format.type {kind!r}: expected text, json_object or "
                     "json_schema", argument="response_format.type")


class Grammar:
    """One request's constraint, step by step: Grammar.json(tokenizer, schema) or
    Grammar.lark(tokenizer, text) (llguidance's Lark dialect, %json for embedded schemas)."""

    def __init__(self, tokenizer, grammar: str, *, argument: str):
        ll = _llguidance()
        self.n_vocab = tokenizer.n_vocab
        self.argument = argument
        self.matcher = ll.LLMatcher(_lltokenizer(tokenizer), grammar, log_level=0)
        if self.matcher.is_error():
            raise UsageError(f"{argument}: the grammar does not compile: "
                             f"{self.matcher.get_error()}", argument=argument)
        self._mask = ll.numpy.allocate_token_bitmask(1, self.n_vocab)
        self._fill = ll.numpy.fill_next_token_bitmask

    @classmethod
    def json(cls, tokenizer, schema: dict, *, argument: str = "response_format") -> Grammar:
        ll = _llguidance()
        try:
            grammar = ll.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), defaults={"whitespace_flexible": False})
        except ValueError as err:
            raise UsageError(f"{argument}: the JSON schema does not compile: {err}",
                             argument=argument) from None
        return cls(tokenizer, grammar, argument=argument)

    @classmethod
    def lark(cls, tokenizer, text: str, *, argument: str) -> Grammar:
        ll = _llguidance()
        try:
            grammar = ll.LLMatcher.grammar_from_lark(text)
        except ValueError as err:
            raise UsageError(f"{argument}: the grammar does not compile: {err}",
                             argument=argument) from None
        return cls(tokenizer, grammar, argument=argument)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """logits with every token the grammar forbids next at -inf."""
        self._fill(self.matcher, self._mask)
        allowed = np.unpackbits(self._mask[0].view(np.uint8), bitorder="little")[:self.n_vocab]
        return np.where(allowed.astype(bool), logits, np.float32(-np.inf)).astype(np.float32)

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise UsageError(f"{self.argument}: token {token} broke the grammar: "
                             f"{self.matcher.get_error()}", argument=self.argument)

    @property
    def finished(self) -> bool:
        """The grammar is complete and nothing else may follow."""
        return self.matcher.is_stopped()
