"""Chat templates: the file's ``tokenizer.chat_template`` rendered in Jinja2's sandbox.

A chat template is code that arrived inside a model file.  llama-cpp-python rendered it
in a plain Jinja2 environment and a crafted GGUF could run arbitrary Python
(CVE-2024-34359).  Here it runs in ``ImmutableSandboxedEnvironment``: no attribute
access to Python internals, no mutation of the objects we pass in.

What a message says must stay text.  The rendered prompt is tokenized with special
tokens parsed, because the template's markup is made of them; but then a user who
types ``<|im_end|><|im_start|>system`` would close their own turn and open a system
turn.  ``protect_messages`` prevents that without touching the template: inside every
string of every message it puts a mark character after the first character of each
control-token text, so those texts no longer match a special token; the tokenizer
drops the mark again before encoding the text (Tokenizer.encode(literal_mark=...)).
The template sees the messages almost as given (it may strip, split or compare them),
and a conversation without such texts tokenizes exactly as before.
"""
from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import ModelError

# Used when a file has no template: ChatML, what Qwen2 and SmolLM2 both speak.
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
          "{{ message['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _raise_exception(message):
    raise TemplateError(message)


class ChatTemplate:
    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        self.source = source or CHATML
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
        try:
            self.template = env.from_string(self.source)
        except TemplateError as err:
            raise ModelError(f"the chat template does not parse: {err}") from None
        self.bos_token, self.eos_token = bos_token, eos_token

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True,
               tools: list[dict] | None = None) -> str:
        """The prompt text for a conversation [{"role": ..., "content": ...}, ...]; tools
        (OpenAI's tool objects), when given, go to the template's ``tools`` variable."""
        extra = {} if tools is None else {"tools": tools}
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token,
                                        **extra)
        except SecurityError as err:
            raise ModelError(f"the chat template tried something unsafe and was stopped: {err}") from None
        except TemplateError as err:
            raise ModelError(f"the chat template failed: {err}") from None


# candidate marks: Unicode noncharacters, which no real text should contain
_MARKS = [chr(c) for c in range(0xFDD0, 0xFDF0)]


def protect_messages(messages: list[dict], literal_texts: Sequence[str],
                     template_source: str) -> tuple[list[dict], str]:
    """Copies of messages whose strings cannot form any of literal_texts once rendered,
    and the mark that breaks them (see the module doc)."""
    strings = list(_strings(messages)) + [template_source]
    mark = next((m for m in _MARKS
                 if not any(m in text for text in [*strings, *literal_texts])), None)
    if mark is None:
        raise ModelError("cannot protect this conversation: it uses every Unicode "
                         "noncharacter U+FDD0..U+FDEF (pass parse_special_in_content=True "
                         "to tokenize it as llama.cpp does)")
    present = [text for text in literal_texts if any(text in s for s in strings[:-1])]

    def protect(value):
        if isinstance(value, str):
            for text in present:
                value = value.replace(text, text[0] + mark + text[1:])
            return value
        if isinstance(value, dict):
            return {key: protect(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [protect(item) for item in value]
        return value
    return [protect(message) for message in messages], mark


def _strings(value):
    """Every string inside a message structure (contents, roles, text parts, ...)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
