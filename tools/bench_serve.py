"""pyggml serve against llama-cpp-python's own server: concurrent streaming clients and a
multi-turn chat, on the same model file with the same threads, in the same run.

    python tools/bench_serve.py [MODEL] [--threads 2] [--clients 1 4 8] [--tokens 32]
                                [--rounds 3] [--ctx 1024] [--turns 4]

MODEL defaults to pyggml's demo model (SmolLM2-135M-Instruct Q4_1).  Both servers run,
each in its own process, for the whole run; each measurement runs against one server
while the other idles, the two alternating within every round, and the table reports
the median over the rounds.

Per concurrency level N: N streaming /v1/chat/completions requests start together
(temperature 0, distinct prompts, max_tokens --tokens); "tok/s" is every client's
generated tokens (content chunks: both servers send one per token) over the wall time
from the first request to the last [DONE]; "TTFT" is the median time to a client's
first content chunk.  pyggml serve runs with --parallel max(clients); llama-cpp-python's
server handles one request at a time, the others wait (--interrupt_requests False: by
default it would end the running stream early for the newcomer).

The chat: --turns user turns in one conversation, each request carrying the whole
history; per turn, the prompt's token count, the tokens that are new since the previous
turn's prompt (its new user message plus the previous reply), and each server's time to
the first token.  With a prompt cache that time follows the new tokens, not the total.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PYGGML_CLI = "import sys; from pyggml.cli import main; sys.exit(main())"
TOPICS = ["rivers", "mountains", "the moon", "bread", "trains", "bees", "winter", "music",
          "the sea", "clocks", "forests", "bridges"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env: dict):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)

    def wait(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited (see {self.log.name})")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name} did not start in {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def stream_chat(url: str, messages: list[dict], max_tokens: int) -> dict:
    """One streaming chat request: its text, content chunks and time to the first one."""
    # greedy, and no repeat penalty: llama-cpp-python's server defaults to 1.1, pyggml's to
    # none, and the same text on both sides is what makes the token counts comparable
    body = {"model": "bench", "messages": messages, "max_tokens": max_tokens,
            "temperature": 0, "repeat_penalty": 1.0, "stream": True}
    start = time.perf_counter()
    first = None
    chunks, text = 0, []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {})
            if delta.get("content"):
                first = first or time.perf_counter()
                chunks += 1
                text.append(delta["content"])
    end = time.perf_counter()
    return {"ttft": (first or end) - start, "tokens": chunks, "text": "".join(text),
            "start": start, "end": end}


def concurrent(url: str, n: int, max_tokens: int, round_no: int) -> dict:
    results: list[dict | None] = [None] * n

    def client(i):
        topic = TOPICS[(i + round_no) % len(TOPICS)]
        results[i] = stream_chat(url, [{"role": "user", "content":
                                        f"Write a short poem about {topic}."}], max_tokens)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["end"] for r in results) - start
    tokens = sum(r["tokens"] for r in results)
    return {"tok_s": tokens / wall, "ttft": statistics.median(r["ttft"] for r in results),
            "tokens": tokens}


def chat_turns(url: str, turns: int, max_tokens: int, token_count) -> list[dict]:
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 8}]
    out, previous = [], 0
    for k in range(turns):
        messages.append({"role": "user", "content":
                         f"Tell me one fact about {TOPICS[k]}, in one sentence."})
        n_prompt = token_count(messages)
        r = stream_chat(url, messages, max_tokens)
        out.append({"prompt": n_prompt, "new": n_prompt - previous, "ttft": r["ttft"]})
        messages.append({"role": "assistant", "content": r["text"]})
        previous = n_prompt
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--tokens", type=int, default=32, help="max_tokens per request")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ctx", type=int, default=1024,
                   help="context of each pyggml slot (-c ctx x slots) and of llama-cpp-python's server")
    p.add_argument("--turns", type=int, default=4)
    args = p.parse_args()
    if args.model is None:
        sys.path.insert(0, str(ROOT))
        from pyggml.cache import demo_model
        args.model = str(demo_model())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    parallel = max(args.clients)
    port = free_port()
    ours = Server("pyggml", [PYTHON, "-c", PYGGML_CLI, "serve", args.model,
                             "--port", str(port), "--parallel", str(parallel),
                             "-c", str(args.ctx * parallel), "-t", str(args.threads),
                             "--alias", "bench"],
                  port, env)
    port = free_port()
    theirs = Server("llama-cpp-python", [PYTHON, "-m", "llama_cpp.server", "--model", args.model,
                                         "--port", str(port), "--n_threads", str(args.threads),
                                         "--n_threads_batch", str(args.threads),
                                         "--n_ctx", str(args.ctx), "--verbose", "False",
                                         # its default cuts a running stream short when
                                         # the next request comes: let them queue instead
                                         "--interrupt_requests", "False"],
                    port, env)
    servers = [ours, theirs]
    try:
        for s in servers:
            s.wait()

        def token_count(messages):
            prompt = httpx.post(f"{ours.url}/apply-template", json={"messages": messages},
                                timeout=60).json()["prompt"]
            return len(httpx.post(f"{ours.url}/tokenize",
                                  json={"content": prompt, "add_special": True},
                                  timeout=60).json()["tokens"])
        for s in servers:                           # warm-up: first-call costs, both sides
            stream_chat(s.url, [{"role": "user", "content": "Hi"}], 4)
        table = {(s.name, n): [] for s in servers for n in args.clients}
        chats = {s.name: [] for s in servers}
        for round_no in range(args.rounds):
            load = os.getloadavg()[0]
            order = servers if round_no % 2 == 0 else servers[::-1]
            for n in args.clients:
                for s in order:
                    table[s.name, n].append(concurrent(s.url, n, args.tokens, round_no))
                    print(f"round {round_no + 1} {s.name} {n} clients: {table[s.name, n][-1]}",
                          file=sys.stderr, flush=True)
            for s in order:
                chats[s.name].append(chat_turns(s.url, args.turns, args.tokens, token_count))
            # the table so far after every round: a long run stopped early still reports
            report(args, parallel, table, chats, round_no + 1, max(load, os.getloadavg()[0]))
    finally:
        for s in servers:
            s.stop()
    return 0


def report(args, parallel, table, chats, rounds, load) -> None:
    def med(name, n, key):
        return statistics.median(r[key] for r in table[name, n])
    print(f"\nmodel {args.model}\nthreads {args.threads}, max_tokens {args.tokens}, "
          f"median of {rounds} round(s), pyggml --parallel {parallel}, "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"\n{'clients':>7} | {'pyggml tok/s':>12} {'TTFT s':>7} | {'llama-cpp-py tok/s':>18} "
          f"{'TTFT s':>7} | {'tok/s ratio':>11} {'TTFT ratio':>10}")
    for n in args.clients:
        a, b = med("pyggml", n, "tok_s"), med("llama-cpp-python", n, "tok_s")
        ta, tb = med("pyggml", n, "ttft"), med("llama-cpp-python", n, "ttft")
        print(f"{n:>7} | {a:>12.1f} {ta:>7.2f} | {b:>18.1f} {tb:>7.2f} | {a / b:>10.2f}x "
              f"{ta / tb:>9.2f}x")
    print(f"\n{'turn':>4} {'prompt':>6} {'new':>5} | {'pyggml TTFT s':>13} "
          f"{'ms/new tok':>10} | {'llama-cpp-py TTFT s':>19} {'ms/new tok':>10}")
    for k in range(args.turns):
        row = {name: statistics.median(c[k]["ttft"] for c in runs) for name, runs in chats.items()}
        first = chats["pyggml"][0][k]
        print(f"{k + 1:>4} {first['prompt']:>6} {first['new']:>5} | {row['pyggml']:>13.3f} "
              f"{1000 * row['pyggml'] / first['new']:>10.2f} | "
              f"{row['llama-cpp-python']:>19.3f} "
              f"{1000 * row['llama-cpp-python'] / first['new']:>10.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
