"""Chat templates render like the model expects and cannot escape Jinja2's sandbox."""
import re

import pytest

from pyggml.errors import ModelError
from pyggml.text.chat import ChatTemplate

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_default_template_is_chatml():
    text = ChatTemplate(None).render(MESSAGES)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_qwen_template_from_tokenizer_config():
    import make_model
    template = ChatTemplate(make_model.qwen_vocab()["chat_template"])
    text = template.render([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_bos_token_and_generation_prompt_flag():
    template = ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
                            "{% if add_generation_prompt %}>{% endif %}", bos_token="<s>")
    assert template.render(MESSAGES) == "<s>Be brief.Hi>"
    assert template.render(MESSAGES, add_generation_prompt=False) == "<s>Be brief.Hi"


@pytest.mark.parametrize("payload", [
    # the CVE-2024-34359 shape: reach os through Python internals
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ messages.append(1) }}",                    # mutating our objects is refused too
])
def test_template_cannot_escape_the_sandbox(payload):
    with pytest.raises(ModelError, match="unsafe|failed"):
        ChatTemplate(payload).render(MESSAGES)


def test_raise_exception_in_template_is_a_model_error():
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ModelError, match="roles must alternate"):
        template.render(MESSAGES)


def test_template_syntax_error_is_a_model_error():
    with pytest.raises(ModelError, match="does not parse"):
        ChatTemplate("{% for %}")


# The families' own templates (llama.cpp's models/templates, from the llama-cpp-python sdist)
FAMILY_TEMPLATES = ["Qwen-Qwen3-0.6B", "Qwen-Qwen2.5-7B-Instruct",
                    "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
                    "microsoft-Phi-3.5-mini-instruct", "google-gemma-2-2b-it",
                    "mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506"]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke\nabout cats."}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Arr"}, {"role": "user", "content": "  Where is it?  "}],
]


@pytest.mark.oracle
@pytest.mark.parametrize("name", FAMILY_TEMPLATES)
def test_family_templates_render_as_llama_cpp_python_renders_them(name):
    """The same text as llama-cpp-python's Jinja2ChatFormatter (what its
    create_chat_completion renders), or the same refusal (gemma: no system role)."""
    import make_model
    assert_renders_as_llama_cpp_python(make_model.template_path(name).read_text(encoding="utf-8"),
                                       bos_token="<s>", eos_token="</s>")


def assert_renders_as_llama_cpp_python(source: str, *, bos_token: str, eos_token: str) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    ours = ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            formatter = Jinja2ChatFormatter(source, eos_token=eos_token, bos_token=bos_token,
                                            add_generation_prompt=add_generation_prompt)
            try:
                expected = formatter(messages=messages).prompt
            except ValueError as err:                  # the template's raise_exception
                with pytest.raises(ModelError, match=re.escape(str(err))):
                    ours.render(messages, add_generation_prompt=add_generation_prompt)
                continue
            assert ours.render(messages, add_generation_prompt=add_generation_prompt) == expected
