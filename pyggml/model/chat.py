"""Chat templates: the file's ``tokenizer.chat_template`` rendered in Jinja2's sandbox.

A chat template is code that arrived inside a model file.  llama-cpp-python rendered it
in a plain Jinja2 environment and a crafted GGUF could run arbitrary Python
(CVE-2024-34359).  Here it runs in ``ImmutableSandboxedEnvironment``: no attribute
access to Python internals, no mutation of the objects we pass in.
"""
from __future__ import annotations

import datetime
import json

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

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation [{"role": ..., "content": ...}, ...]."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except SecurityError as err:
            raise ModelError(f"the chat template tried something unsafe and was stopped: {err}") from None
        except TemplateError as err:
            raise ModelError(f"the chat template failed: {err}") from None
