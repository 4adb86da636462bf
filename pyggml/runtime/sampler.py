"""Choosing the next token from the logits.

The chain is llama.cpp's default order (common/sampling.cpp):

    logits -> repeat penalty -> top-k -> top-p -> min-p -> temperature -> draw

``temperature <= 0`` is greedy (argmax after the penalty).  Everything is a filter on
a (candidate ids, logits) pair, so each step reads as the definition of its knob.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import UsageError


@dataclasses.dataclass
class SamplerSettings:
    """The sampling knobs, with llama.cpp's meanings (its -1s included)."""
    temperature: float = 0.8
    top_k: int = 40              # keep the k most likely tokens; 0 keeps all
    top_p: float = 0.95          # keep the smallest set whose probability reaches p; 1 keeps all
    min_p: float = 0.05          # drop tokens less likely than min_p * p(best); 0 keeps all
    repeat_penalty: float = 1.0  # divide positive (multiply negative) logits of recent tokens
    repeat_last_n: int = 64      # how many recent tokens the penalty looks at; -1: all of them
    seed: int | None = None      # None or -1 draws a fresh seed

    def __post_init__(self):
        if self.seed == -1:
            self.seed = None
        problems = [
            ("temperature", self.temperature, "a number >= 0 (0 is greedy)",
             math.isfinite(self.temperature) and self.temperature >= 0),
            ("top_k", self.top_k, "an integer >= 0 (0 keeps all)", self.top_k >= 0),
            ("top_p", self.top_p, "a number in (0, 1] (1 keeps all)", 0 < self.top_p <= 1),
            ("min_p", self.min_p, "a number in [0, 1] (0 keeps all)", 0 <= self.min_p <= 1),
            ("repeat_penalty", self.repeat_penalty, "a number > 0 (1 is off)",
             math.isfinite(self.repeat_penalty) and self.repeat_penalty > 0),
            ("repeat_last_n", self.repeat_last_n, "an integer >= 0, or -1 for all tokens",
             self.repeat_last_n >= -1),
            ("seed", self.seed, "an integer >= 0, or -1 for a random seed",
             self.seed is None or self.seed >= 0),
        ]
        for name, value, expected, ok in problems:
            if not ok:
                raise UsageError(f"sampler setting {name}={value!r}: expected {expected}",
                                 argument=name)


def _probabilities(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(), dtype=np.float64)
    return p / p.sum()


class Sampler:
    def __init__(self, settings: SamplerSettings | None = None):
        self.settings = settings or SamplerSettings()
        self.rng = np.random.default_rng(self.settings.seed)

    def __call__(self, logits: np.ndarray, history: list[int]) -> int:
        """Pick the next token id from logits (n_vocab,) given the ids generated so far."""
        s = self.settings
        logits = logits.astype(np.float32, copy=True)
        if s.repeat_penalty != 1.0 and s.repeat_last_n and history:
            recent = np.unique(np.asarray(history[-s.repeat_last_n:] if s.repeat_last_n > 0
                                          else history))
            values = logits[recent]
            logits[recent] = np.where(values > 0, values / s.repeat_penalty,
                                      values * s.repeat_penalty)
        if s.temperature <= 0:
            return int(np.argmax(logits))

        # candidates, most likely first (a partition first: a full sort of 150k logits costs
        # milliseconds per token, docs/performance.md)
        if 0 < s.top_k < len(logits):
            ids = np.argpartition(logits, -s.top_k)[-s.top_k:]
        else:
            ids = np.arange(len(logits))
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        if s.top_p < 1.0:
            cumulative = np.cumsum(_probabilities(logits[ids]))
            ids = ids[:int(np.searchsorted(cumulative, s.top_p)) + 1]
        if s.min_p > 0:
            p = _probabilities(logits[ids])
            ids = ids[p >= s.min_p * p[0]]
        p = _probabilities(logits[ids] / np.float32(s.temperature))
        return int(ids[self.rng.choice(len(ids), p=p)])
