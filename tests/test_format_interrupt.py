"""Interrupted writes leave nothing behind.

``pyggml split``, ``merge`` and ``quantize``, stopped by SIGINT, SIGTERM or SIGHUP
while they write, exit with 128 + signal after one line saying so and leave neither
a temporary nor an output; a split killed outright leaves temporaries but no shard;
the temporaries of dead writers are removed by the next write of the same output.

The commands read a sparse file: a GGUF header followed by a 2 GiB hole, so that
making the input costs nothing while writing its copy takes long enough to stop
every command halfway on any disk.  Each is stopped as soon as its temporary file
appears, so only a few MB are ever written.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pyggml.cli import STOP_SIGNALS
from pyggml.format.writer import split_gguf, write_gguf

from format_bytes import F32, INT32, UINT16, UINT32, gguf, info, kv_scalar, kv_str

BIG = 1 << 29                        # F32 elements of the sparse tensor: 2 GiB


def sparse_gguf(path, tensors: dict[str, tuple[int, ...]], kvs=()):
    """A GGUF file of F32 tensors (name -> numpy shape) whose data is a hole: the header
    is written, then the file is extended to its full size, so its data reads as zeros
    without taking disk space or time."""
    infos, offset = [], 0
    for name, shape in tensors.items():
        infos.append(info(name, shape[::-1], F32, offset))
        offset += -(-4 * int(np.prod(shape)) // 32) * 32
    head = gguf([kv_str("general.name", "sparse"), *kvs], infos)
    path.write_bytes(head)
    os.truncate(path, len(head) + offset)
    return path


def split_keys(no: int, count: int, n_tensors: int) -> list[bytes]:
    return [kv_scalar("split.no", UINT16, no), kv_scalar("split.count", UINT16, count),
            kv_scalar("split.tensors.count", INT32, n_tensors)]


def command(kind: str, tmp_path, out) -> tuple[list, int]:
    """argv of a command writing into the folder ``out`` whose input takes seconds to copy,
    and how many temporaries appear once it is well under way."""
    if kind == "split":          # shard 1 (small) is complete when shard 2's temporary appears
        src = sparse_gguf(tmp_path / "in.gguf", {"small": (8,), "big": (BIG,)})
        return ["split", src, out / "m", "--max-tensors", "1"], 2
    if kind == "merge":
        first = sparse_gguf(tmp_path / "in-00001-of-00002.gguf", {"small": (8,)},
                            split_keys(0, 2, 2))
        sparse_gguf(tmp_path / "in-00002-of-00002.gguf", {"big": (BIG,)}, split_keys(1, 2, 2))
        return ["merge", first, out / "merged.gguf"], 1
    # quantize: the weight matrix is tiny and quantized at once; the norm (1-D) is copied
    # (quantize applies llama-quantize's rules, which need the architecture and its layers)
    src = sparse_gguf(tmp_path / "in.gguf", {"blk.0.attn_q.weight": (32, 32),
                                             "blk.0.attn_norm.weight": (BIG,)},
                      [kv_str("general.architecture", "llama"),
                       kv_scalar("llama.block_count", UINT32, 1)])
    return ["quantize", src, out / "q8.gguf", "Q8_0"], 1


def default_stop_signals():
    """In the child, before exec: the stop signals as a terminal delivers them, even when
    the tests run under nohup or in a background job (an ignored signal stays ignored
    across exec, and a command may rightly leave ignored signals alone)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def start(argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyggml", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_stop_signals)


def wait_for_temporaries(out, count: int, process: subprocess.Popen) -> list[str]:
    """Poll every millisecond until ``count`` temporaries are in ``out``; fail if the
    command ends first or takes more than 30 s."""
    deadline = time.monotonic() + 30
    while True:
        names = os.listdir(out)
        if sum(name.endswith(".tmp") for name in names) >= count:
            return names
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"no {count} temporaries in {out}: {names}; exit {process.returncode}, "
                        f"stderr: {err!r}")
        time.sleep(0.001)


def is_temporary(name: str, output: str) -> bool:
    """Named as the writer's module docstring says: .NAME.pyggml-PID-RANDOM.tmp."""
    head, _, tail = name.rpartition(".pyggml-")
    pid, _, rest = tail.partition("-")
    return head == f".{output}" and pid.isdigit() and rest.endswith(".tmp")


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("kind", ["split", "merge", "quantize"])
def test_stopped_command_leaves_nothing(tmp_path, kind, signum):
    out = tmp_path / "out"
    out.mkdir()
    argv, n_temporaries = command(kind, tmp_path, out)
    process = start(argv)
    wait_for_temporaries(out, n_temporaries, process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip() == f"pyggml {kind}: stopped by {signal.Signals(signum).name}"
    assert stdout == ""
    assert os.listdir(out) == []


def test_split_killed_outright_leaves_no_shard(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    argv, n_temporaries = command("split", tmp_path, out)
    process = start(argv)
    wait_for_temporaries(out, n_temporaries, process)     # shard 1 complete, shard 2 begun
    process.kill()
    process.wait()
    shards = ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    left = os.listdir(out)                                  # one temporary per shard, no shard
    assert sorted(shard for name in left for shard in shards if is_temporary(name, shard)) \
        == shards and len(left) == 2

    small = sparse_gguf(tmp_path / "small.gguf", {"a": (8,), "b": (8,)})
    split_gguf(small, out / "m", max_tensors=1)             # the dead writer's temporaries go
    assert sorted(os.listdir(out)) == shards


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", ""])
    finished.wait()                                          # its pid now names no process
    dead, alive = finished.pid, os.getpid()
    names = {
        f".t.gguf.pyggml-{dead}-0123abcd.tmp": False,        # removed: its writer is gone
        f".t.gguf.pyggml-{alive}-0123abcd.tmp": True,        # kept: its writer may still write
        f".u.gguf.pyggml-{dead}-0123abcd.tmp": True,         # kept: another output's
        ".t.gguf.0123abcd.tmp": True,                        # kept: not recognisably pyggml's
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    write_gguf(tmp_path / "t.gguf", {"a": 1}, {})
    kept = [name for name, is_kept in names.items() if is_kept]
    assert sorted(os.listdir(tmp_path)) == sorted(["t.gguf", *kept])


@pytest.mark.parametrize("renamed", [False, True], ids=["before", "after"])
def test_split_interrupted_while_renaming_removes_the_renamed_shards(tmp_path, monkeypatch,
                                                                     renamed):
    """An interrupt between two renames (just before or just after the second one):
    the shards already renamed go too, so no part of the set is left."""
    src = write_gguf(tmp_path / "src.gguf", {"a": 1},
                     {f"t{i}": np.arange(8, dtype=np.float32) for i in range(3)})
    out = tmp_path / "out"
    out.mkdir()
    real_replace, calls = os.replace, []

    def replace(source, target):
        calls.append(target)
        if len(calls) == 2 and not renamed:
            raise KeyboardInterrupt
        real_replace(source, target)
        if len(calls) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        split_gguf(src, out / "m", max_tensors=1)
    assert len(calls) == 2 and os.listdir(out) == []
