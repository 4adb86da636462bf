"""Shared fixtures: named test models from tools/make_model.py, made once and cached."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_model  # noqa: E402


@pytest.fixture(scope="session")
def model_path():
    """model_path("qwen2-tiny-q4_k_m") -> Path of that fixture model (see make_model.FIXTURES)."""
    return make_model.model_path
