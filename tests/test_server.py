"""pyggml serve, driven by real clients over HTTP: the official ``openai`` package on the
OpenAI routes, plain HTTP (httpx) with Ollama's documented bodies on Ollama's.

The server runs in this process (uvicorn in a thread) on SmolLM2-135M-Instruct, the real
demo model, with 4 slots.  Oracles: ``pyggml generate --chat`` and llama-cpp-python's
``create_chat_completion`` for the greedy text; the same request sent alone for the
concurrent ones; the tokenizer and chat template for the llama-server extras.
"""
import contextlib
import json
import socket
import threading
import time

import httpx
import pytest

from pyggml.server import Service, create_app

MODEL = "smollm2-q4_1"
N_CTX = 512
PARALLEL = 4
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def service(model_path):
    service = Service(str(model_path(MODEL)), parallel=PARALLEL, n_ctx=N_CTX, alias=MODEL)
    yield service
    service.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(service):
    """service behind uvicorn in a thread: yields its base URL (test_server_tools uses it
    too)."""
    import uvicorn
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def base_url(service):
    with serving(service) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    import openai
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=300) as http:
        yield http


def _chat(client, messages, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


# ------------------------------------------------------------------ greedy text, oracles
@pytest.mark.oracle
def test_greedy_chat_equals_generate_chat_and_llama_cpp_python(client, service, model_path,
                                                               capsys):
    from llama_oracle import open_llama

    from pyggml.cli import main
    reply = _chat(client, QUESTION, max_tokens=12, temperature=0)
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    n_prompt = len(service.model.chat_tokens(QUESTION))
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens,
            reply.usage.total_tokens) == (n_prompt, 12, n_prompt + 12)

    assert main(["generate", str(model_path(MODEL)), QUESTION[0]["content"], "--chat",
                 "-n", "12", "--temp", "0", "--no-stats", "-c", str(N_CTX)]) == 0
    assert capsys.readouterr().out == text + "\n"

    llm = open_llama(model_path(MODEL), N_CTX)
    try:
        expected = llm.create_chat_completion(QUESTION, max_tokens=12, temperature=0)
    finally:
        llm.close()
    assert text == expected["choices"][0]["message"]["content"]
    assert reply.usage.prompt_tokens == expected["usage"]["prompt_tokens"]


def test_streamed_chunks_concatenate_to_the_same_text(client):
    whole = _chat(client, QUESTION, max_tokens=12, temperature=0).choices[0].message.content
    chunks = list(_chat(client, QUESTION, max_tokens=12, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_completions_text_stream_and_stop(client):
    reply = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                      temperature=0)
    text = reply.choices[0].text
    streamed = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text
    # a stop string ends the text before it, with finish_reason stop
    stop = text.split()[2]
    cut = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                    temperature=0, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_end_of_generation_is_finish_reason_stop(client):
    reply = _chat(client, [{"role": "user", "content": "Hi"}], max_tokens=32, temperature=0)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens < 32       # the end-of-turn token counts, unseen
    assert not reply.choices[0].message.content.endswith("<|im_end|>")


def test_logprobs_are_the_model_distribution(client, service):
    import numpy as np
    reply = _chat(client, QUESTION, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 3
    ids = service.model.chat_tokens(QUESTION)
    with _reference_model(service) as model:
        logits = model.logits(ids)[-1].astype(np.float64)
    lp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    best = np.argsort(-lp)[:3]
    tok = service.model.tokenizer
    assert [t.token for t in content[0].top_logprobs] == [
        tok.token_to_piece(int(i), False).decode() for i in best]
    assert content[0].logprob == pytest.approx(lp[best[0]], abs=1e-4)
    assert content[0].token == content[0].top_logprobs[0].token      # greedy took the best


def _reference_model(service):
    import pyggml
    return pyggml.load(service.located.path, n_ctx=N_CTX)


# ------------------------------------------------------------------ concurrency, prompt cache
def test_eight_concurrent_streams_each_get_their_sequential_text(client, service):
    questions = [[{"role": "user", "content": f"Name a color number {i}."}] for i in range(8)]
    alone = [_chat(client, q, max_tokens=6, temperature=0).choices[0].message.content
             for q in questions]
    results = [None] * 8
    errors = []

    def run(i):
        try:
            stream = _chat(client, questions[i], max_tokens=6, temperature=0, stream=True)
            results[i] = "".join(c.choices[0].delta.content or "" for c in stream)
        except Exception as err:                   # reported below, in the test's thread
            errors.append(err)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, service.scheduler.busy())
        time.sleep(0.01)
    assert not errors
    assert results == alone
    assert peak > 1                                # they did run side by side


def test_a_later_turn_evaluates_only_its_new_tokens(http, service):
    """The prompt cache, measured by Ollama's prompt_eval_count: the second turn of a chat
    evaluates only what follows the longest prefix a slot holds."""
    def turn(messages):
        return http.post("/api/chat", json={"model": MODEL, "messages": messages,
                                            "stream": False,
                                            "options": {"temperature": 0, "num_predict": 5}}).json()
    messages = [{"role": "user", "content": "Tell me about the river Seine, please."}]
    first = turn(messages)
    assert first["prompt_eval_count"] >= 1
    messages += [first["message"], {"role": "user", "content": "And the Loire?"}]
    ids = service.model.chat_tokens(messages)
    held = [list(slot.model.tokens) for slot in service.scheduler.slots]
    prefix = max(_common(ids[:-1], tokens) for tokens in held)
    second = turn(messages)
    assert second["prompt_eval_count"] == len(ids) - prefix < len(ids) // 2


def test_openai_usage_counts_the_prompt_tokens_a_slot_held(client, service):
    """usage.prompt_tokens_details.cached_tokens (OpenAI's field): asked again, a prompt
    re-evaluates only its last token (its logits are not kept)."""
    question = [{"role": "user", "content": "Which is the longest river in Europe?"}]
    n_prompt = len(service.model.chat_tokens(question))
    _chat(client, question, max_tokens=3, temperature=0)
    again = _chat(client, question, max_tokens=3, temperature=0)
    assert again.usage.prompt_tokens == n_prompt
    assert again.usage.prompt_tokens_details.cached_tokens == n_prompt - 1


def _common(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_a_client_that_disconnects_frees_its_slot(base_url, service, client):
    with httpx.Client(base_url=base_url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions",
                         json={"messages": QUESTION, "max_tokens": 400, "stream": True}) as r:
            events = (line for line in r.iter_lines() if line.startswith("data: "))
            next(events), next(events)               # the role, then a first token: running
            assert service.scheduler.busy() == 1
    deadline = time.monotonic() + 20
    while service.scheduler.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.scheduler.busy() == 0
    assert _chat(client, QUESTION, max_tokens=2, temperature=0).choices[0].finish_reason == "length"


def test_a_non_streaming_client_that_gives_up_frees_its_slot(base_url, service):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/completions", timeout=1.5,
                   json={"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0})
    deadline = time.monotonic() + 20
    while service.scheduler.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.scheduler.busy() == 0


# ------------------------------------------------------------------ bad input: 4xx naming the field
@pytest.mark.parametrize("body, status, param", [
    ("{not json", 400, "body"),
    ("[1, 2]", 400, "body"),
    ({"messages": "hello"}, 400, "messages"),
    ({}, 400, "messages"),
    ({"messages": [{"content": "no role"}]}, 400, "messages[0]"),
    ({"messages": QUESTION, "temperature": "hot"}, 400, "temperature"),
    ({"messages": QUESTION, "max_tokens": 1.5}, 400, "max_tokens"),
    ({"messages": QUESTION, "top_p": 0}, 400, "top_p"),
    ({"messages": QUESTION, "stream": "yes"}, 400, "stream"),
    ({"messages": QUESTION, "stop": 3}, 400, "stop"),
    ({"messages": QUESTION, "n": 2}, 400, "n"),
    ({"messages": QUESTION, "model": "gpt-4o"}, 404, "model"),
    ({"messages": [{"role": "user", "content": "word " * 600}]}, 400, "messages"),
    ({"messages": QUESTION, "response_format": "json"}, 400, "response_format"),
    ({"messages": QUESTION, "response_format": {"type": "xml"}}, 400, "response_format.type"),
    ({"messages": QUESTION, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"$ref": "#/definitions/missing"}}}}, 400, "response_format"),
    ({"messages": QUESTION, "tools": [{"type": "function"}]}, 400, "tools[0]"),
    ({"messages": QUESTION, "tools": {"name": "f"}}, 400, "tools"),
    ({"messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400, "tool_choice"),
    ({"messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": "always"}, 400, "tool_choice"),
    ({"messages": QUESTION, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"$ref": "#/definitions/missing"}}}],
      "tool_choice": "required"}, 400, "tools"),
])
def test_bad_chat_requests_get_a_4xx_naming_the_field(http, body, status, param):
    content = body if isinstance(body, str) else json.dumps(body)
    r = http.post("/v1/chat/completions", content=content,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_a_failing_request_fails_alone(http, client, monkeypatch):
    """A bug inside one request's step (simulated: max_tokens 13 raises) ends that request
    with a 500 body, or an error event once it streams; the request beside it and the
    server carry on."""
    from pyggml.runtime.api import Generation
    step = Generation.step

    def failing(self, logits):
        if self.request.max_tokens == 13 and len(self.generated) == 2:
            raise ZeroDivisionError("simulated")
        return step(self, logits)
    monkeypatch.setattr(Generation, "step", failing)
    expected = _chat(client, QUESTION, max_tokens=8, temperature=0).choices[0].message.content
    results = {}

    def beside():
        results["text"] = _chat(client, QUESTION, max_tokens=8,
                                temperature=0).choices[0].message.content
    thread = threading.Thread(target=beside)
    thread.start()
    r = http.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 13})
    assert r.status_code == 500 and "simulated" in r.json()["error"]["message"]
    with http.stream("POST", "/v1/chat/completions",
                     json={"messages": QUESTION, "max_tokens": 13, "stream": True}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert "simulated" in json.loads(events[-1])["error"]["message"]
    thread.join()
    assert results["text"] == expected


def test_unknown_paths_and_methods_get_json_errors(http):
    r = http.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 404 and "/v1/embeddings" in r.json()["error"]["message"]
    assert http.get("/v1/chat/completions").status_code == 405


def test_bad_input_through_the_openai_client_and_the_server_lives_on(client):
    import openai
    with pytest.raises(openai.BadRequestError) as err:
        _chat(client, QUESTION, temperature=-1)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=[[1, 2], [3]], max_tokens=2)
    assert err.value.body["param"] == "prompt"
    assert _chat(client, QUESTION, max_tokens=1).choices[0].finish_reason == "length"


def test_api_key_is_required_except_on_health(service):
    from starlette.testclient import TestClient
    app = create_app(service, api_key="sesame")       # routes only: no second scheduler
    http = TestClient(app)
    assert http.get("/health").status_code == 200
    r = http.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert http.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = http.get("/v1/models", headers={"Authorization": "Bearer sesame"})
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == service.name


# ------------------------------------------------------------------ models, llama-server extras
def test_models_health_tokenize_detokenize_apply_template(client, http, service):
    assert [m.id for m in client.models.list()] == [service.name]
    assert http.get("/health").json() == {"status": "ok"}
    text = "Hello world, <|im_end|>!"
    tokens = http.post("/tokenize", json={"content": text}).json()["tokens"]
    tok = service.model.tokenizer
    assert tokens == tok.encode(text, add_special=False, parse_special=True)
    with_pieces = http.post("/tokenize", json={"content": "Hello", "with_pieces": True}).json()
    assert with_pieces["tokens"] == [{"id": t, "piece": tok.token_to_piece(t, True).decode()}
                                     for t in tok.encode("Hello", add_special=False)]
    assert http.post("/detokenize", json={"tokens": tokens}).json()["content"] == \
        service.model.detokenize(tokens)
    assert http.post("/detokenize", json={"tokens": [-1]}).status_code == 400
    prompt = http.post("/apply-template", json={"messages": QUESTION}).json()["prompt"]
    assert prompt == service.model.chat_template.render(QUESTION)


# ------------------------------------------------------------------ Ollama over plain HTTP
# Ollama's default repeat_penalty is 1.1 (llama.cpp's 1.0): the OpenAI route asks for it
OLLAMA_PENALTY = {"repeat_penalty": 1.1}


def test_ollama_chat_streams_ndjson_with_the_openai_text(http, client):
    text = _chat(client, QUESTION, max_tokens=8, temperature=0,
                 extra_body=OLLAMA_PENALTY).choices[0].message.content
    body = {"model": MODEL, "messages": QUESTION, "options": {"temperature": 0, "num_predict": 8}}
    with http.stream("POST", "/api/chat", json=body) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert "".join(line["message"]["content"] for line in lines) == text
    last = lines[-1]
    assert last["done_reason"] == "length" and last["eval_count"] == 8
    for key in ("total_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"):
        assert isinstance(last[key], int)
    whole = http.post("/api/chat", json={**body, "stream": False}).json()
    assert whole["message"] == {"role": "assistant", "content": text} and whole["done"]


def test_ollama_generate_templated_and_raw(http, client, service):
    body = {"model": MODEL, "prompt": QUESTION[0]["content"], "stream": False,
            "options": {"temperature": 0, "num_predict": 8}}
    chat_text = _chat(client, QUESTION, max_tokens=8, temperature=0,
                      extra_body=OLLAMA_PENALTY).choices[0].message.content
    assert http.post("/api/generate", json=body).json()["response"] == chat_text
    raw = http.post("/api/generate", json={**body, "prompt": "Once upon a time", "raw": True})
    completion = client.completions.create(model=MODEL, prompt="Once upon a time",
                                           max_tokens=8, temperature=0, extra_body=OLLAMA_PENALTY)
    assert raw.json()["response"] == completion.choices[0].text
    bad = http.post("/api/generate", json={**body, "options": {"temperature": "warm"}})
    assert bad.status_code == 400 and "temperature" in bad.json()["error"]
    missing = http.post("/api/generate", json={**body, "model": "llama3:70b"})
    assert missing.status_code == 404 and "llama3:70b" in missing.json()["error"]


def test_ollama_tags_and_show(http, service):
    import pyggml
    tags = http.get("/api/tags").json()["models"]
    assert [m["name"] for m in tags] == [service.name]
    with pyggml.open(service.located.path) as f:
        n_params = sum(info.n_elements for info in f.tensors.values())
        assert tags[0]["size"] == service.located.path.stat().st_size
        assert tags[0]["details"]["family"] == f.metadata["general.architecture"] == "llama"
    assert tags[0]["details"]["quantization_level"] == "Q4_1"
    assert tags[0]["details"]["parameter_size"] == f"{n_params / 1e6:.0f}M" == "135M"
    show = http.post("/api/show", json={"model": service.name}).json()
    assert show["template"] == service.model.chat_template.source
    assert show["model_info"]["general.architecture"] == "llama"
    assert http.post("/api/show", json={"model": "nope"}).status_code == 404


# ------------------------------------------------------------------ the command
def test_pyggml_serve_command_with_api_key(model_path):
    """`pyggml serve` as a user starts it: binds, needs the key, answers, stops on Ctrl-C."""
    import signal
    import subprocess
    import sys
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pyggml", "serve", str(model_path(MODEL)),
                             "--port", str(port), "--parallel", "2", "-c", "512",
                             "--api-key", "sesame", "--alias", "smol"],
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "pyggml serve did not come up"
                time.sleep(0.2)
        body = {"model": "smol", "messages": QUESTION, "max_tokens": 2}
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120,
                       headers={"Authorization": "Bearer sesame"})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert "2 slot(s) of 256 tokens" in stderr          # -c is the whole server's, split
    assert "Traceback" not in stderr


def test_the_server_context_is_split_between_slots_as_llama_server_splits_it():
    from pyggml.errors import UsageError
    from pyggml.server.service import slot_context
    assert slot_context(8192, 4, 32768) == 2048
    assert slot_context(1000, 3, 32768) == 333           # llama.cpp: n_ctx / n_seq_max
    assert slot_context(0, 2, 8192) == 4096              # 0: the trained length, split
    assert slot_context(65536, 1, 8192) == 8192          # capped at the trained length
    with pytest.raises(UsageError, match="ctx-size 3 split between 4 slots"):
        slot_context(3, 4, 8192)
    with pytest.raises(UsageError, match="expected >= 0"):
        slot_context(-1, 1, 8192)


def test_pyggml_serve_bad_arguments_exit_2(tmp_path):
    from pyggml.cli import main
    assert main(["serve", str(tmp_path / "missing.gguf")]) == 2
    assert main(["serve", "--demo", "--port", "0"]) == 2
    assert main(["serve"]) == 2


# ------------------------------------------------------------------ structured output
PERSON = {"type": "object", "additionalProperties": False,
          "properties": {"name": {"type": "string", "maxLength": 24},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "pet": {"enum": ["cat", "dog", "none"]}},
          "required": ["name", "age", "pet"]}


def _check_person(value):
    """PERSON's constraints, by hand."""
    assert isinstance(value, dict) and set(value) == {"name", "age", "pet"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 24
    assert isinstance(value["age"], int) and 0 <= value["age"] <= 150
    assert value["pet"] in ("cat", "dog", "none")


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_json_schema_responses_parse_and_validate(client, temperature):
    reply = _chat(client, [{"role": "user", "content": "Describe a person."}], max_tokens=60,
                  temperature=temperature, seed=3,
                  response_format={"type": "json_schema",
                                   "json_schema": {"name": "person", "schema": PERSON}})
    assert reply.choices[0].finish_reason == "stop"
    _check_person(json.loads(reply.choices[0].message.content))


def test_ollama_format_schema_and_json(http):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Describe a person."}],
            "stream": False, "format": PERSON, "options": {"temperature": 0, "num_predict": 60}}
    reply = http.post("/api/chat", json=body).json()
    assert reply["done_reason"] == "stop"
    _check_person(json.loads(reply["message"]["content"]))
    reply = http.post("/api/chat", json={**body, "format": "json",
                                         "options": {"temperature": 0, "num_predict": 40}})
    text = reply.json()["message"]["content"]
    assert text.startswith("{")
    if reply.json()["done_reason"] == "stop":
        assert isinstance(json.loads(text), dict)
    assert http.post("/api/chat", json={**body, "format": "yaml"}).status_code == 400


def test_no_mmap_slots_share_one_copy_and_answer_the_same(model_path):
    """serve --no-mmap: every slot's weights are views of one copy (not the file's map, not
    a copy per slot), and their logits are the mapped model's."""
    import numpy as np

    import pyggml
    path = str(model_path(MODEL))
    copied = Service(path, parallel=2, n_ctx=N_CTX, alias=MODEL, use_mmap=False)
    try:
        wq = [m.weights.layers[0].wq for m in copied.models]
        assert np.shares_memory(wq[0].data, wq[1].data)
        with pyggml.open(path) as f, pyggml.load(path, n_ctx=N_CTX) as mapped:
            assert not np.shares_memory(wq[0].data, f.raw(wq[0].name))
            ids = mapped.tokenize("The capital of France is")
            assert np.array_equal(copied.models[1].logits(ids), mapped.logits(ids))
    finally:
        copied.close()
