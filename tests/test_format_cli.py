"""``pyggml info``, ``pyggml split``, ``pyggml merge``: figures checked against gguf-py,
outputs against their inputs, and every refusal a one-line error with exit status 2."""
from __future__ import annotations

import io
import json
import sys
from types import SimpleNamespace

import gguf
import numpy as np
import pytest

from pyggml.cli import main, progress
from pyggml.cli.progress import ProgressBar, format_bytes
from pyggml.cli.split_merge import parse_size
from pyggml.errors import UsageError
from pyggml.format.writer import write_gguf


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json_agrees_with_gguf_py(capsys, model_path):
    path = model_path("qwen2-tiny-q4_k_m")
    code, out, _ = run(capsys, "info", path, "--json", "--tensors")
    assert code == 0
    report = json.loads(out)
    reader = gguf.GGUFReader(path)
    tensors = reader.tensors
    assert report["architecture"] == "qwen2" and report["file_type"] == "MOSTLY_Q4_K_M"
    assert report["n_tensors"] == len(tensors)
    assert report["n_parameters"] == sum(t.n_elements for t in tensors)
    assert report["tensor_bytes"] == sum(t.n_bytes for t in tensors)
    assert report["bits_per_weight"] == round(8 * report["tensor_bytes"] / report["n_parameters"], 4)
    for name, row in report["types"].items():
        mine = [t for t in tensors if t.tensor_type.name == name]
        assert row["n_tensors"] == len(mine) and row["bytes"] == sum(t.n_bytes for t in mine)
    assert sum(row["n_tensors"] for row in report["types"].values()) == len(tensors)
    for key, field in reader.fields.items():
        if key.startswith("qwen2."):
            assert report["hyperparameters"][key[len("qwen2."):]] == field.contents()
    assert report["tokenizer"]["n_tokens"] == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert report["tokenizer"]["n_merges"] == len(reader.fields["tokenizer.ggml.merges"].data)
    assert report["shards"] == [{"path": str(path), "index": 0, "version": 3, "alignment": 32,
                                 "data_offset": reader.data_offset, "file_size": path.stat().st_size,
                                 "n_tensors": len(tensors)}]
    assert [(t["name"], t["type"], t["shape"], t["nbytes"], t["offset"]) for t in report["tensors"]] \
        == [(t.name, t.tensor_type.name, [int(n) for n in reversed(t.shape)], t.n_bytes, t.data_offset)
            for t in tensors]


def test_info_text(capsys, model_path):
    code, out, _ = run(capsys, "info", model_path("qwen2-tiny-q4_k_m"), "--tensors")
    assert code == 0
    assert "model        qwen2 'pyggml-test-qwen2-256x2', file type MOSTLY_Q4_K_M" in out
    assert "block_count 2" in out and "n_tokens 151936" in out and "n_merges 151387" in out
    assert "26 tensors" in out and "blk.1.ffn_up.weight" in out
    assert any(line.split()[:2] == ["Q6_K", "3"] for line in out.splitlines())


def test_split_merge_commands(capsys, tmp_path, model_path):
    src = model_path("qwen2-tiny-q4_k_m")
    code, out, _ = run(capsys, "split", src, tmp_path / "m.gguf", "--max-tensors", "10")
    shards = [tmp_path / f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert code == 0 and out.split() == [str(p) for p in shards]
    code, out, _ = run(capsys, "info", shards[2], "--json")
    assert [s["n_tensors"] for s in json.loads(out)["shards"]] == [10, 10, 6]

    code, _, err = run(capsys, "split", src, tmp_path / "m", "--max-tensors", "10")
    assert code == 2 and err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert run(capsys, "split", src, tmp_path / "m", "--max-tensors", "10", "--force")[0] == 0

    merged = tmp_path / "merged.gguf"
    code, out, _ = run(capsys, "merge", shards[1], merged)
    assert code == 0 and out.strip() == str(merged)
    assert merged.read_bytes() == src.read_bytes()
    code, _, err = run(capsys, "merge", shards[0], merged)
    assert code == 2 and "already exists" in err
    assert run(capsys, "merge", shards[0], merged, "--force")[0] == 0

    # tensor order: output_norm (1 KiB), token_embd (30.4 MiB), 24 small ones: by hand,
    # [] | [output_norm] | 1 KiB + 30.4 MiB > 20 MB -> [token_embd] | 30.4 MiB + ... -> [the rest]
    code, out, _ = run(capsys, "split", src, tmp_path / "s", "--max-size", "20M",
                       "--no-tensor-first-split")
    shards = [tmp_path / f"s-0000{i}-of-00004.gguf" for i in (1, 2, 3, 4)]
    assert code == 0 and out.split() == [str(p) for p in shards]
    code, out, _ = run(capsys, "info", shards[0], "--json")
    assert code == 0 and [s["n_tensors"] for s in json.loads(out)["shards"]] == [0, 1, 1, 24]


@pytest.mark.parametrize("argv, match", [
    (["info", "{tmp}/missing.gguf"], "cannot read"),
    (["info", "{tmp}/bad.gguf"], "not a GGUF file"),
    (["merge", "{tmp}/bad.gguf", "{tmp}/out.gguf"], "not a GGUF file"),
    (["split", "{tmp}/ok.gguf", "{tmp}/o", "--max-size", "12Q"], "--max-size '12Q'"),
    (["split", "{tmp}/ok.gguf", "{tmp}/o", "--max-tensors", "0"], "must be at least 1"),
    (["split", "{tmp}/ok.gguf", "{tmp}/o", "--max-size=-5M"], "expected a positive size"),
])
def test_errors_are_one_line_and_exit_2(capsys, tmp_path, argv, match):
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + bytes(20))
    (tmp_path / "ok.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and out == "" and err.count("\n") == 1 and match in err
    assert err.startswith(f"pyggml {argv[0]}: error: ")


def test_a_value_starting_with_a_dash_is_explained(capsys, tmp_path):
    code, out, err = run(capsys, "split", tmp_path / "in.gguf", tmp_path / "o", "--max-size", "-5M")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "a value that starts with '-' is written --max-size=VALUE" in err


def test_parse_size_uses_decimal_units():
    assert parse_size("2G") == 2_000_000_000 and parse_size("500M") == 500_000_000
    assert parse_size("1.5g") == 1_500_000_000 and parse_size("4096") == 4096
    assert parse_size("10KB") == 10_000
    for bad in ("", "G", "-1M", "0", "2X"):
        with pytest.raises(UsageError):
            parse_size(bad)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_only_on_a_terminal():
    terminal, pipe = FakeTerminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(3 * 2**20, "copy", stream=stream)
        for _ in range(3):
            bar(2**20)
        bar.close()
    assert pipe.getvalue() == ""
    last = terminal.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("copy [##############################] 100% 3.0 MiB / 3.0 MiB")
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB"


def test_progress_bar_can_be_forced_off_and_on():
    terminal, pipe = FakeTerminal(), io.StringIO()
    for stream, enabled in ((terminal, False), (pipe, True)):
        bar = ProgressBar(10, "copy", stream=stream, enabled=enabled)
        bar(10)
        bar.close()
    assert terminal.getvalue() == "" and pipe.getvalue().startswith("\rcopy [")


def test_progress_bar_counts_tokens_once_its_delay_has_passed(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    quick, slow = FakeTerminal(), FakeTerminal()
    bar = ProgressBar(10, "prompt", stream=quick, unit="tok", delay=2)
    clock[0] += 1.5
    bar(10)
    bar.close()
    assert quick.getvalue() == ""                       # done within the delay: nothing at all
    bar = ProgressBar(10, "prompt", stream=slow, unit="tok", delay=2)
    clock[0] += 1
    bar(4)
    assert slow.getvalue() == ""
    clock[0] += 3
    bar(6)
    bar.close()
    assert slow.getvalue().split("\r")[1:] == [
        "prompt [##############################] 100% 10 tok / 10 tok  2.5 tok/s ",
        "prompt [##############################] 100% 10 tok / 10 tok  2.5 tok/s \n"]


@pytest.mark.parametrize("argv", [["split", "{tmp}/in.gguf", "{tmp}/s", "--max-tensors", "1"],
                                  ["merge", "{tmp}/in.gguf", "{tmp}/merged.gguf"],
                                  ["quantize", "{tmp}/in.gguf", "{tmp}/q.gguf", "Q8_0"]])
def test_no_progress_silences_the_bar(tmp_path, monkeypatch, argv):
    # quantize, as llama-quantize, needs the architecture whose per-tensor rules it applies
    write_gguf(tmp_path / "in.gguf", {"general.architecture": "llama", "llama.block_count": 1},
               {"blk.0.attn_q.weight": np.ones((4, 32), np.float32),
                "blk.0.attn_norm.weight": np.ones(32, np.float32)})
    argv = [a.format(tmp=tmp_path) for a in argv]
    for flags, drawn in (([], True), (["--no-progress", "--force"], False)):
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main(argv + flags) == 0
        assert (f"\r{argv[0]} [" in terminal.getvalue()) == drawn
