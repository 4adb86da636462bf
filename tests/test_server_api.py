"""Model.create_chat_completion / create_completion (pyggml.runtime.api), the Python face
of pyggml serve, against llama-cpp-python's methods of the same names and against
llama.cpp's own penalties sampler (through libllama)."""
import ctypes

import numpy as np
import pytest

import pyggml
from pyggml.errors import UsageError
from pyggml.runtime.api import Generation, completion_request

MODEL = "smollm2-q4_1"
N_CTX = 512
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def model(model_path):
    with pyggml.load(model_path(MODEL), n_ctx=N_CTX) as model:
        yield model


@pytest.fixture(scope="module")
def llm(model_path):
    from llama_oracle import open_llama
    llm = open_llama(model_path(MODEL), N_CTX)
    yield llm
    llm.close()


@pytest.mark.oracle
def test_chat_completion_dict_as_llama_cpp_python_gives_it(model, llm):
    ours = model.create_chat_completion(QUESTION, max_tokens=10, temperature=0)
    theirs = llm.create_chat_completion(QUESTION, max_tokens=10, temperature=0)
    assert ours["object"] == theirs["object"] == "chat.completion"
    assert ours["choices"][0]["message"] == theirs["choices"][0]["message"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]
    assert ours["usage"] == theirs["usage"]
    chunks = list(model.create_chat_completion(QUESTION, max_tokens=10, temperature=0,
                                               stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == \
        theirs["choices"][0]["message"]["content"]


@pytest.mark.oracle
def test_completion_text_as_llama_cpp_python_gives_it(model, llm):
    prompt = "The three primary colors are"
    ours = model.create_completion(prompt, max_tokens=12, temperature=0)
    theirs = llm.create_completion(prompt, max_tokens=12, temperature=0)
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"]
    assert ours["usage"] == theirs["usage"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"] == "length"


def _llama_penalties(logits, history, last_n, repeat, freq, present):
    """llama.cpp's penalties sampler on logits after accepting history (prompt tokens
    included, as llama-server accepts them)."""
    import llama_cpp
    smpl = llama_cpp.llama_sampler_init_penalties(len(logits), last_n, repeat, freq, present)
    try:
        for token in history:
            llama_cpp.llama_sampler_accept(smpl, token)
        data = (llama_cpp.llama_token_data * len(logits))()
        view = np.ctypeslib.as_array(data)
        view["id"] = np.arange(len(logits))
        view["logit"] = logits
        view["p"] = 0
        array = llama_cpp.llama_token_data_array(data=data, size=len(logits), selected=-1,
                                                 sorted=False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(array))
        out = np.empty(len(logits), np.float32)
        out[view["id"][:array.size]] = view["logit"][:array.size]
        return out
    finally:
        llama_cpp.llama_sampler_free(smpl)


@pytest.mark.oracle
@pytest.mark.parametrize("repeat, freq, present, last_n", [
    (1.3, 0.0, 0.0, 64), (1.0, 0.8, 0.0, 64), (1.2, 0.5, 1.0, 8), (1.1, -0.5, 0.3, -1)])
def test_penalties_are_llama_cpp_penalties_sampler(model, repeat, freq, present, last_n):
    prompt = "The list of fruits: apple, banana, apple, banana, apple, cherry, apple,"
    request = completion_request(model, prompt, temperature=0, repeat_penalty=repeat,
                                 frequency_penalty=freq, presence_penalty=present,
                                 repeat_last_n=last_n)
    generation = Generation(model, request)
    logits = model.logits(request.ids)[-1]
    window = request.ids if last_n == -1 else request.ids[-last_n:]
    expected = _llama_penalties(logits, window, len(window), repeat, freq, present)
    assert generation.penalize
    np.testing.assert_array_equal(generation._penalties(logits), expected)


def test_seed_repeats_and_stop_strings_cut(model):
    a = model.create_completion("Once upon a time", max_tokens=12, temperature=0.9, seed=7)
    b = model.create_completion("Once upon a time", max_tokens=12, temperature=0.9, seed=7)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    greedy = model.create_completion("Once upon a time", max_tokens=12, temperature=0)
    text = greedy["choices"][0]["text"]
    stop = text[5:9]                                    # may span tokens: held back, then cut
    cut = model.create_completion("Once upon a time", max_tokens=12, temperature=0, stop=stop)
    assert cut["choices"][0]["text"] == text[:text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    pieces = [c["choices"][0]["text"] for c in
              model.create_completion("Once upon a time", max_tokens=12, temperature=0,
                                      stop=[stop], stream=True)]
    assert "".join(pieces) == text[:text.index(stop)]


def test_completion_logprobs_shape(model):
    reply = model.create_completion("Hello", max_tokens=3, temperature=0, logprobs=2)
    lp = reply["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert "".join(lp["tokens"]) == reply["choices"][0]["text"]
    assert lp["text_offset"][0] == 0
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert len(top) == 2 and max(top.values()) == pytest.approx(logprob)
        assert logprob <= 0


@pytest.mark.parametrize("kwargs, argument", [
    (dict(temperature=-0.5), "temperature"), (dict(top_p=1.5), "top_p"),
    (dict(min_p="0.1"), "min_p"), (dict(max_tokens=-3), "max_tokens"),
    (dict(presence_penalty=3), "presence_penalty"), (dict(seed=-5), "seed"),
    (dict(stop=[1]), "stop"), (dict(logprobs=50), "logprobs"), (dict(n=3), "n"),
    (dict(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (dict(response_format={"type": "json_schema", "json_schema": {"schema": {"$ref": "#/x"}}}),
     "response_format")])
def test_bad_arguments_are_usage_errors_naming_them(model, kwargs, argument):
    with pytest.raises(UsageError) as err:
        model.create_completion("Hi", **kwargs)
    assert err.value.argument == argument


def test_prompt_longer_than_context_names_the_prompt(model):
    with pytest.raises(UsageError, match="context holds 512") as err:
        model.create_chat_completion([{"role": "user", "content": "word " * 600}])
    assert err.value.argument == "messages"


def test_json_schema_constrains_every_sample(model):
    """Sampled at temperature 1.5 with several seeds, the text still parses and follows the
    schema: the grammar masks what the schema forbids before the sampler draws."""
    import json
    schema = {"type": "object", "additionalProperties": False, "required": ["ok", "n"],
              "properties": {"ok": {"type": "boolean"},
                             "n": {"type": "integer", "minimum": 1, "maximum": 9}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    for seed in range(3):
        reply = model.create_chat_completion(QUESTION, max_tokens=40, temperature=1.5,
                                             top_k=0, top_p=1.0, min_p=0.0, seed=seed,
                                             response_format=fmt)
        assert reply["choices"][0]["finish_reason"] == "stop"
        value = json.loads(reply["choices"][0]["message"]["content"])
        assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool)
        assert type(value["n"]) is int and 1 <= value["n"] <= 9
