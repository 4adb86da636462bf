"""A mapped file that changes under pyggml: a GGUFChangedError naming the file when a check
sees it; one line naming the file and exit status 2 when a read faults anyway (SIGBUS,
kernels/mapguard.c), never a bare "Bus error"; a file replaced by rename is no change; a
path that is not a regular file is refused by name, a FIFO without hanging."""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyggml
from pyggml.errors import GGUFChangedError, GGUFError
from pyggml.format import mapguard
from pyggml.format.writer import split_gguf, write_gguf

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2-tiny-q4_k_m"
CHANGED_FILE_STATUS = 2          # kernels/mapguard.c: pyggml's status for every error
SUBPROCESS_TIMEOUT_S = 120


@pytest.fixture
def model_copy(model_path, tmp_path) -> Path:
    path = tmp_path / "model.gguf"
    shutil.copyfile(model_path(MODEL), path)
    return path


@pytest.fixture
def guard_library():
    """libpyggml_mapguard must be loaded: setup.py builds it wherever there is a C
    compiler, so its absence is a broken install, not a reason to skip."""
    reason = mapguard.why_unguarded()
    assert reason is None, f"libpyggml_mapguard is not in use: {reason} (pip install builds it)"


def last_tensor(f) -> str:
    """The tensor that ends the file: the first to lose its bytes when the file shrinks."""
    return max(f.tensors.values(), key=lambda info: info.offset).name


def run_python(code: str, *args, env: dict | None = None, flags=()) -> subprocess.CompletedProcess:
    """A fresh interpreter running code with args; no core file when it dies of a signal."""
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *map(str, args)], capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_S, cwd=ROOT, env={**os.environ, **(env or {})},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))


def assert_guard_message(result: subprocess.CompletedProcess, path: Path) -> int:
    """The process ended with the guard's one line about path and status 2; returns the
    byte offset the line names."""
    assert result.returncode == CHANGED_FILE_STATUS, (result.returncode, result.stderr)
    assert "Fatal Python error" not in result.stderr
    line = (rf"pyggml: error: {re.escape(str(path))} changed while it was mapped \(truncated or "
            r"rewritten in place by another process\): reading byte offset (\d+) failed "
            r"\(SIGBUS\); run again once the file is complete\n")
    match = re.fullmatch(line, result.stderr)
    assert match, result.stderr
    return int(match[1])


# ----------------------------------------------------------------- the check: an exception


@pytest.mark.parametrize("read", ["raw", "dequantize"])
def test_truncated_file_raises_naming_the_file_and_both_sizes(model_copy, read):
    size = model_copy.stat().st_size
    with pyggml.open(model_copy) as f:
        name = last_tensor(f)
        getattr(f, read)(name)
        os.truncate(model_copy, size // 2)
        with pytest.raises(GGUFChangedError) as err:
            getattr(f, read)(name)
        with pytest.raises(GGUFChangedError):
            f.check_unchanged()
    message = str(err.value)
    assert message.startswith(f"{model_copy}: changed size since it was opened: "
                              f"was {size} bytes, now {size // 2};")
    assert "reopen it" in message
    assert isinstance(err.value, GGUFError) and err.value.path == str(model_copy)


def test_file_rewritten_in_place_to_the_same_size_raises(model_copy):
    original = model_copy.read_bytes()
    with pyggml.open(model_copy) as f:
        name = last_tensor(f)
        opened_mtime_ns = model_copy.stat().st_mtime_ns
        os.truncate(model_copy, 0)
        with open(model_copy, "r+b") as out:
            out.write(original)
        # a rewrite within one tick of the kernel's file clock keeps the old mtime; a real
        # one (gigabytes) takes longer than that, which this stands for
        os.utime(model_copy, ns=(opened_mtime_ns, opened_mtime_ns + 10**9))
        for check in (lambda: f.raw(name), lambda: f.dequantize(name), f.check_unchanged):
            with pytest.raises(GGUFChangedError) as err:
                check()
            assert str(err.value).startswith(f"{model_copy}: was modified since it was opened")
            assert f"same size, {len(original)} bytes" in str(err.value)
            assert "reopen it" in str(err.value)


def test_file_replaced_by_rename_is_no_change(model_copy, tmp_path):
    original = model_copy.read_bytes()
    with pyggml.open(model_copy) as f:
        before = {name: f.dequantize(name) for name in f.tensors}
        replacement = tmp_path / "replacement.gguf"
        replacement.write_bytes(b"GGUF" + bytes(100))
        os.replace(replacement, model_copy)           # the old inode stays mapped, whole
        f.check_unchanged()
        for name, info in f.tensors.items():
            assert f.raw(name).tobytes() == original[info.offset:info.offset + info.nbytes]
            assert np.array_equal(f.dequantize(name), before[name])


def test_file_replaced_by_pyggml_writer_is_no_change(model_copy):
    with pyggml.open(model_copy) as f:
        name = last_tensor(f)
        before = f.raw(name).copy()
        write_gguf(model_copy, {"general.architecture": "other"},
                   {"t": np.zeros(8, np.float32)}, overwrite=True)
        f.check_unchanged()
        assert np.array_equal(f.raw(name), before)
    with pyggml.open(model_copy) as replaced:
        assert list(replaced.tensors) == ["t"]


def test_split_set_names_the_shard_that_changed(tmp_path):
    source = write_gguf(tmp_path / "whole.gguf", {"general.architecture": "llama"},
                        {f"t{i}": np.full(4096, i, np.float32) for i in range(3)})
    shards = split_gguf(source, tmp_path / "set", max_tensors=1)
    with pyggml.open(shards[1]) as f:
        os.truncate(shards[2], shards[2].stat().st_size - 4096)
        with pytest.raises(GGUFChangedError) as err:
            f.check_unchanged()
        assert str(err.value).startswith(f"{shards[2]}: changed size")
        with pytest.raises(GGUFChangedError):
            f.raw("t2")
        assert np.array_equal(f.dequantize("t0"), np.zeros(4096, np.float32))   # whole shard


def test_closed_file_has_nothing_to_check(model_copy):
    f = pyggml.open(model_copy)
    f.close()
    os.truncate(model_copy, 0)
    f.check_unchanged()


def test_model_batch_after_truncation_raises(model_copy):
    result = run_python("""
import os, sys, pyggml
model = pyggml.load(sys.argv[1], n_ctx=64)
model.logits([1, 2, 3])
os.truncate(sys.argv[1], 4096)
try:
    model.logits([1, 2, 3])
except pyggml.errors.GGUFChangedError as err:
    print(err)
""", model_copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{model_copy}: changed size since it was opened")


# ----------------------------------------------------------------- the last resort: SIGBUS

VIEW_READ_AFTER_TRUNCATION = """
import os, sys, pyggml
path, close_first = sys.argv[1], sys.argv[2] == "close"
f = pyggml.open(path)
info = max(f.tensors.values(), key=lambda t: t.offset)
view = f.raw(info.name)
if close_first:
    f.close()               # the view keeps the file mapped, and guarded
print(info.offset, info.nbytes, flush=True)
os.truncate(path, 4096)
view.sum()
print("read past the end of the file", flush=True)
"""


@pytest.mark.parametrize("close_first", ["open", "close"])
@pytest.mark.parametrize("faulthandler", [False, True])
def test_view_read_after_truncation_ends_with_one_line(model_copy, guard_library, close_first,
                                                       faulthandler):
    result = run_python(VIEW_READ_AFTER_TRUNCATION, model_copy, close_first,
                        flags=("-X", "faulthandler") if faulthandler else ())
    offset = assert_guard_message(result, model_copy)
    start, nbytes = map(int, result.stdout.split())
    assert start <= offset < start + nbytes


MODEL_KERNEL_AFTER_TRUNCATION = """
import os, sys, numpy as np, pyggml, pyggml.quants
path, kernel = sys.argv[1], sys.argv[2]
model = pyggml.load(path, n_ctx=64, backend="c", n_threads=2)
w = model.weights.output                      # a view on the file's map
os.truncate(path, 4096)
if kernel == "c":
    model.kernels.matmul(w.ggml_type, w.data, np.ones((1, w.n_in), np.float32))
else:
    pyggml.quants.dequantize(w.ggml_type, w.data, (w.n_out, w.n_in))
print("read past the end of the file", flush=True)
"""


@pytest.mark.parametrize("kernel", ["c", "numba"])
def test_model_weights_read_after_truncation_end_with_one_line(model_copy, guard_library,
                                                               kernel):
    result = run_python(MODEL_KERNEL_AFTER_TRUNCATION, model_copy, kernel)
    assert_guard_message(result, model_copy)


SIGBUS_ELSEWHERE = """
import mmap, os, signal, sys, pyggml
path, other, how = sys.argv[1:4]
f = pyggml.open(path)                          # installs the handler
if how == "kill":
    os.kill(os.getpid(), signal.SIGBUS)
else:                                          # a fault in a map pyggml does not know
    with open(other, "rb") as o:
        m = mmap.mmap(o.fileno(), 0, access=mmap.ACCESS_READ)
    os.truncate(other, 0)
    m[len(m) - 1]
print("survived", flush=True)
"""


@pytest.mark.parametrize("how", ["fault", "kill"])
@pytest.mark.parametrize("faulthandler", [False, True])
def test_sigbus_elsewhere_goes_to_the_previous_action(model_copy, tmp_path, guard_library, how,
                                                      faulthandler):
    other = tmp_path / "other.bin"
    other.write_bytes(bytes(1 << 16))
    result = run_python(SIGBUS_ELSEWHERE, model_copy, other, how,
                        flags=("-X", "faulthandler") if faulthandler else ())
    assert result.returncode == -signal.SIGBUS, (result.returncode, result.stderr)
    assert "pyggml: error" not in result.stderr and "survived" not in result.stdout
    assert ("Fatal Python error: Bus error" in result.stderr) == faulthandler


SLOTS_FREED = """
import os, sys, pyggml
from pyggml.format.reader import close_map, read_file
path = sys.argv[1]
closed = []
for i in range(300):             # each way of unmapping more often than the guard has slots (256)
    f = pyggml.open(path)
    view = f.raw("t")
    f.close()                    # a view still uses the map: the last view unmaps it
    del view
    parsed = read_file(path)
    close_map(parsed.map)        # unmapped here, while the mmap object lives on
    closed.append(parsed)
f = pyggml.open(path)
view = f.raw("t")
os.truncate(path, 0)
view.sum()
"""


def test_unmapped_files_free_their_guard_slots(tmp_path, guard_library):
    path = write_gguf(tmp_path / "small.gguf", {"general.architecture": "llama"},
                      {"t": np.ones(1 << 14, np.float32)})
    assert_guard_message(run_python(SLOTS_FREED, path), path)


def test_without_the_library_faulthandler_prints_a_traceback(model_copy, tmp_path):
    code = ("from pyggml.format import mapguard\n"
            "print(mapguard.why_unguarded(), flush=True)\n" + VIEW_READ_AFTER_TRUNCATION)
    missing = tmp_path / "libpyggml_mapguard.so"
    result = run_python(code, model_copy, "open", env={"PYGGML_MAPGUARD_LIB": str(missing)})
    assert result.stdout.startswith(f"cannot load {missing}")
    assert result.returncode == -signal.SIGBUS
    assert "Fatal Python error: Bus error" in result.stderr
    assert 'File "<string>", line' in result.stderr        # the traceback says where


# ----------------------------------------------------------------- not a regular file


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"),
                                        (None, "a directory")])
def test_device_or_directory_is_refused_by_name(tmp_path, path, kind):
    path = path or tmp_path
    with pytest.raises(GGUFError) as err:
        pyggml.open(path)
    assert str(err.value) == f"{path}: cannot read: is {kind}, not a file"


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    result = run_python("import sys; from pyggml.cli import main; sys.exit(main())",
                        "info", fifo)
    assert result.returncode == 2
    assert result.stderr == (f"pyggml info: error: {fifo}: cannot read: is a FIFO (named pipe), "
                             "not a file\n")


def test_path_turned_into_a_fifo_after_the_check_is_refused_without_hanging(tmp_path, model_copy):
    """The path is checked, then opened: if it names a FIFO by the time it is opened, the
    open returns at once (O_NONBLOCK) and the descriptor's own fstat refuses it."""
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    result = run_python("""
import os, sys
from pyggml.errors import GGUFError
from pyggml.format.reader import read_file
fifo, regular = sys.argv[1:3]
real_stat = os.stat
os.stat = lambda path, *args, **kwargs: real_stat(regular if str(path) == fifo else path,
                                                  *args, **kwargs)
try:
    read_file(fifo)
except GGUFError as err:
    print(err)
""", fifo, model_copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{fifo}: cannot read: is a FIFO (named pipe), not a file\n"
