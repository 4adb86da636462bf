"""Tool calls (pyggml.runtime.tools): the families' call formats parsed back as
llama.cpp's chat parser reads them (hand-written replies), tools and tool turns rendered
by the chat templates as llama-cpp-python's Jinja renders them, and the round trip
through the official ``openai`` client on a live server whose model's template supports
tools (the qwen2-tiny fixture: random weights with the real Qwen tokenizer and chat
template, so its calls come from the grammar that tool_choice "required" imposes).
"""
import json

import httpx
import pytest
from test_server import serving

from pyggml.runtime.tools import (GenericFormat, HermesFormat, Llama3Format, MistralFormat,
                                  ToolStream, tool_format)
from pyggml.server import Service
from pyggml.text.chat import ChatTemplate

MODEL = "qwen2-tiny-q4_k_m"
N_CTX = 1024
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
        "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}},
        "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def _common(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _calls(calls):
    return [(c.name, json.loads(c.arguments)) for c in calls]


# ------------------------------------------------------------------ formats, hand-checked
def test_formats_are_recognised_from_the_family_templates():
    import make_model

    def of(name):
        return tool_format(make_model.template_path(name).read_text(encoding="utf-8"))
    assert isinstance(of("Qwen-Qwen2.5-7B-Instruct"), HermesFormat)
    assert isinstance(of("Qwen-Qwen3-0.6B"), HermesFormat)
    assert isinstance(of("NousResearch-Hermes-3-Llama-3.1-8B-tool_use"), HermesFormat)
    assert isinstance(of("meta-llama-Llama-3.1-8B-Instruct"), Llama3Format)
    assert isinstance(of("meta-llama-Llama-3.3-70B-Instruct"), Llama3Format)
    nemo, small = of("mistralai-Mistral-Nemo-Instruct-2407"), of(
        "Mistral-Small-3.2-24B-Instruct-2506")
    assert isinstance(nemo, MistralFormat) and not nemo.args
    assert isinstance(small, MistralFormat) and small.args
    assert isinstance(tool_format(ChatTemplate(None).source), GenericFormat)


def test_hermes_calls_parse_with_the_content_before_them():
    fmt = HermesFormat()
    text = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome",'
            ' "unit": "C"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": '
            '{"zone": 1}}\n</tool_call>')
    content, calls = fmt.parse(text)
    assert content == "Let me look."
    assert _calls(calls) == [("get_weather", {"city": "Rome", "unit": "C"}),
                             ("get_time", {"zone": 1})]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    # not a call: broken JSON, or text after the call, stays content as written
    for text in ('<tool_call>\n{"name": "f", "arguments": {\n</tool_call>',
                 '<tool_call>{"name": "f", "arguments": {}}</tool_call> and more', "plain"):
        assert fmt.parse(text) == (text, [])


def test_llama3_mistral_and_generic_calls_parse():
    content, calls = Llama3Format().parse(' {"name": "get_time", "parameters": {"zone": 2}}')
    assert content == "" and _calls(calls) == [("get_time", {"zone": 2})]
    assert Llama3Format().parse('{"a": 1} is JSON') == ('{"a": 1} is JSON', [])
    content, calls = MistralFormat(args=False).parse(
        '[TOOL_CALLS][{"name": "get_time", "arguments": {"zone": 3}, "id": "abcdefghi"}]')
    assert content == "" and _calls(calls) == [("get_time", {"zone": 3})]
    assert len(calls[0].id) == 9 and calls[0].id.isalnum()      # as Mistral's templates insist
    content, calls = MistralFormat(args=True).parse(
        'Sure.[TOOL_CALLS]get_time[ARGS]{"zone": 4}[TOOL_CALLS]get_weather[ARGS]'
        '{"city": "Oslo", "unit": "F"}')
    assert content == "Sure."
    assert _calls(calls) == [("get_time", {"zone": 4}),
                             ("get_weather", {"city": "Oslo", "unit": "F"})]
    generic = GenericFormat()
    assert generic.parse('{"response": "Hello"}') == ("Hello", [])
    content, calls = generic.parse('{"tool_call": {"name": "get_time", "arguments": {"zone": 5}}}')
    assert content == "" and _calls(calls) == [("get_time", {"zone": 5})]


def test_a_stream_holds_back_only_what_may_be_a_call():
    stream = ToolStream(HermesFormat())
    reply = 'Checking <tool_call>\n{"name": "get_time", "arguments": {"zone": 6}}\n</tool_call>'
    shown = "".join(stream.add(ch) for ch in reply)
    assert shown == "Checking "
    rest, calls = stream.finish()
    assert rest == "" and _calls(calls) == [("get_time", {"zone": 6})]
    stream = ToolStream(HermesFormat())                 # "<tool" that turns out to be text
    shown = "".join(stream.add(piece) for piece in ["a <tool", "box> b"])
    assert shown + stream.finish()[0] == "a <toolbox> b" and shown == "a <toolbox> b"


# ------------------------------------------------------------------ templates, oracle
TOOL_TURNS = [
    {"role": "system", "content": "You answer briefly."},
    *QUESTION,
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abcdefghi", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "name": "get_weather",
     "content": '{"temperature": 21}'},
]


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B",
                                  "meta-llama-Llama-3.1-8B-Instruct",
                                  "mistralai-Mistral-Nemo-Instruct-2407",
                                  "NousResearch-Hermes-3-Llama-3.1-8B-tool_use"])
def test_tools_and_tool_turns_render_as_llama_cpp_python_renders_them(name):
    import make_model
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    source = make_model.template_path(name).read_text(encoding="utf-8")
    ours = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    for messages in (QUESTION, TOOL_TURNS):
        expected = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(
            messages=messages, tools=TOOLS).prompt
        assert ours.render(messages, tools=TOOLS) == expected
        assert "get_weather" in expected


# ------------------------------------------------------------------ live, the openai client
@pytest.fixture(scope="module")
def service(model_path):
    service = Service(str(model_path(MODEL)), parallel=2, n_ctx=N_CTX, alias=MODEL)
    yield service
    service.close()


@pytest.fixture(scope="module")
def base_url(service):
    with serving(service) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    import openai
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def _valid_weather(arguments: dict) -> bool:
    return (set(arguments) == {"city", "unit"} and arguments["city"] in ("Paris", "Rome", "Oslo")
            and arguments["unit"] in ("C", "F"))


def test_tool_calls_round_trip_through_the_openai_client(client, service, base_url):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=TOOLS,
                                           tool_choice="required", temperature=0,
                                           max_tokens=80)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)           # a JSON string, as OpenAI's
    assert call.function.name in ("get_weather", "get_time")
    if call.function.name == "get_weather":
        assert _valid_weather(arguments)
    else:
        assert set(arguments) == {"zone"} and -12 <= arguments["zone"] <= 14

    # streamed: the same call, in the deltas OpenAI sends (index, id, name, arguments)
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=TOOLS,
                                            tool_choice="required", temperature=0,
                                            max_tokens=80, stream=True)
    deltas, finish = [], None
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and [d.index for d in deltas] == [0]
    assert (deltas[0].function.name, deltas[0].function.arguments) == \
        (call.function.name, call.function.arguments)

    # the follow-up: the assistant turn as the client returns it, and the tool's answer;
    # its prompt is what llama-cpp-python renders (its Jinja fails on a null content, so
    # the oracle gets "", as pyggml reads null)
    turns = [*QUESTION, choice.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    template = service.model.chat_template
    expected = Jinja2ChatFormatter(template.source, eos_token=template.eos_token,
                                   bos_token=template.bos_token)(
        messages=[{**t, "content": t.get("content") or ""} for t in turns], tools=TOOLS).prompt
    assert f'"arguments": {call.function.arguments}' in expected
    prompt = httpx.post(f"{base_url}/apply-template", json={"messages": turns, "tools": TOOLS},
                        timeout=60).json()["prompt"]
    assert prompt == expected
    ids = service.model.tokenizer.encode(expected, add_special=True, parse_special=True)
    after = client.chat.completions.create(model=MODEL, messages=turns, tools=TOOLS,
                                           temperature=0, max_tokens=3)
    assert after.usage.prompt_tokens == len(ids) and after.choices[0].message.content
    after = client.chat.completions.create(model=MODEL, messages=turns, tools=TOOLS,
                                           tool_choice="none", temperature=0, max_tokens=3)
    assert after.usage.prompt_tokens < len(ids)                # tool_choice none: no tools


def test_a_named_function_is_the_one_called(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=TOOLS, temperature=0.8, seed=3, max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert _valid_weather(json.loads(call.function.arguments))


def test_ollama_chat_takes_tools_and_tool_turns(base_url, service):
    """Ollama's /api/chat: tools reach the template (the prompt is what it renders), a
    tool turn with Ollama's object arguments renders, and /api/show says "tools"."""
    turns = [*QUESTION, {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}}]},
        {"role": "tool", "content": '{"temperature": 21}'}]
    with httpx.Client(base_url=base_url, timeout=300) as http:
        expected = service.model.chat_tokens(turns, tools=TOOLS)
        # the slot it takes holds the longest prefix of it; only the rest is evaluated
        cached = max(_common(slot.model.tokens, expected[:-1])
                     for slot in service.scheduler.slots)
        r = http.post("/api/chat", json={"model": MODEL, "messages": turns, "tools": TOOLS,
                                         "stream": False, "options": {"num_predict": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["prompt_eval_count"] == len(expected) - cached
        assert r.json()["message"]["role"] == "assistant"
        show = http.post("/api/show", json={"model": MODEL}).json()
        assert "tools" in show["capabilities"]
        bad = http.post("/api/chat", json={"model": MODEL, "messages": QUESTION,
                                           "tools": [{"type": "function"}]})
        assert bad.status_code == 400 and "tools[0]" in bad.json()["error"]


def test_a_template_without_tools_gets_the_generic_json_format(model_path):
    """SmolLM2's ChatML template knows no tools: they go in a system message, and the reply
    is JSON the grammar enforces, a call or a response that comes back as content."""
    import pyggml
    ask = [{"role": "user", "content": "What is the weather in Paris, in C?"}]
    with pyggml.load(model_path("smollm2-q4_1"), n_ctx=N_CTX) as model:
        assert isinstance(tool_format(model.chat_template.source), GenericFormat)
        plain = model.create_chat_completion(ask, max_tokens=0)["usage"]["prompt_tokens"]
        reply = model.create_chat_completion(ask, tools=TOOLS, max_tokens=80, temperature=0)
        assert reply["usage"]["prompt_tokens"] > plain + 100          # the tools' description
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
        assert choice["message"]["content"] and not choice["message"]["content"].startswith("{")
        reply = model.create_chat_completion(ask, tools=TOOLS, tool_choice="required",
                                             max_tokens=80, temperature=0)
        (call,) = reply["choices"][0]["message"]["tool_calls"]
        assert reply["choices"][0]["finish_reason"] == "tool_calls"
        assert call["function"]["name"] == "get_weather"
        assert _valid_weather(json.loads(call["function"]["arguments"]))


@pytest.mark.parametrize("fmt, call", [
    (HermesFormat(), '<tool_call>\n{"name": "get_time", "arguments": {"zone": 7}}\n</tool_call>'),
    (Llama3Format(), '{"name": "get_time", "parameters": {"zone": 7}}'),
    (MistralFormat(args=False), '[TOOL_CALLS][{"name": "get_time", "arguments": {"zone": 7}}]'),
    (MistralFormat(args=True), '[TOOL_CALLS]get_time[ARGS]{"zone": 7}'),
    (GenericFormat(), '{"tool_call": {"name": "get_time", "arguments": {"zone": 7}}}'),
])
def test_each_forced_grammar_takes_a_call_its_parser_reads(fmt, call, service):
    """The grammar tool_choice "required" imposes accepts a well-formed call (which parses
    back) and refuses arguments against the schema."""
    from pyggml.runtime.grammar import Grammar
    tok = service.model.tokenizer

    def accepts(text):
        grammar = Grammar.lark(tok, fmt.lark(TOOLS, False, tok), argument="tools")
        ids = tok.encode(text, add_special=False, parse_special=True)
        return all(grammar.matcher.consume_token(i) for i in ids) and \
            grammar.matcher.is_accepting()
    assert _calls(fmt.parse(call)[1]) == [("get_time", {"zone": 7})]
    assert accepts(call)
    assert not accepts(call.replace("7", "70"))               # zone maximum 14
