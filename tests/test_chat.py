"""Chat templates render like the model expects and cannot escape Jinja2's sandbox."""
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
