"""Sampler: each knob checked against hand-computed distributions."""
import numpy as np
import pytest

from pyggml.errors import UsageError
from pyggml.runtime.sampler import Sampler, SamplerSettings

OPEN = dict(top_k=0, top_p=1.0, min_p=0.0)        # no filtering


def frequencies(logits, n=20000, history=(), **settings):
    sampler = Sampler(SamplerSettings(seed=1, **settings))
    logits = np.asarray(logits, dtype=np.float32)
    counts = np.bincount([sampler(logits, list(history)) for _ in range(n)], minlength=len(logits))
    return counts / n


def test_greedy_is_argmax_and_ignores_filters():
    sampler = Sampler(SamplerSettings(temperature=0))
    assert sampler(np.array([0.1, 3.0, 2.9, -1], np.float32), []) == 1


def test_temperature_one_samples_softmax():
    # logits 0 and ln 3: p = 1/4, 3/4
    f = frequencies([0.0, np.log(3.0)], temperature=1.0, **OPEN)
    assert f == pytest.approx([0.25, 0.75], abs=0.015)


def test_temperature_sharpens():
    # at T = 0.5 the logits double: p = 1/10, 9/10
    f = frequencies([0.0, np.log(3.0)], temperature=0.5, **OPEN)
    assert f == pytest.approx([0.1, 0.9], abs=0.015)


def test_top_k_keeps_k_best():
    f = frequencies([3.0, 2.0, 1.0, 0.0], temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
    e = np.exp([3.0, 2.0])
    assert f == pytest.approx([e[0] / e.sum(), e[1] / e.sum(), 0, 0], abs=0.015)


def test_top_p_keeps_smallest_set_reaching_p():
    # p = [0.5, 0.3, 0.2]: top_p 0.7 keeps the first two (0.5 < 0.7 <= 0.8)
    logits = np.log([0.5, 0.3, 0.2])
    f = frequencies(logits, temperature=1.0, top_k=0, top_p=0.7, min_p=0.0)
    assert f == pytest.approx([0.625, 0.375, 0.0], abs=0.015)


def test_min_p_drops_unlikely_tokens():
    # p = [0.5, 0.3, 0.2]; min_p 0.5 keeps tokens with p >= 0.25
    logits = np.log([0.5, 0.3, 0.2])
    f = frequencies(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.5)
    assert f == pytest.approx([0.625, 0.375, 0.0], abs=0.015)


def test_repeat_penalty_divides_positive_and_multiplies_negative_logits():
    sampler = Sampler(SamplerSettings(temperature=0, repeat_penalty=2.0))
    # token 0 (logit 3) was just generated: 3 / 2 = 1.5 < 2.0, so token 1 wins
    assert sampler(np.array([3.0, 2.0, -1.0], np.float32), [0]) == 1
    # a negative logit gets more negative: -0.5 * 2 = -1 < -0.9
    assert sampler(np.array([-0.5, -0.9], np.float32), [0]) == 1
    # outside the window the penalty does not apply
    sampler = Sampler(SamplerSettings(temperature=0, repeat_penalty=2.0, repeat_last_n=1))
    assert sampler(np.array([3.0, 2.0, -1.0], np.float32), [0, 2]) == 0
    # -1 (llama.cpp's "the whole context") reaches back to the first token
    sampler = Sampler(SamplerSettings(temperature=0, repeat_penalty=2.0, repeat_last_n=-1))
    assert sampler(np.array([3.0, 2.0, -1.0], np.float32), [0] + [2] * 100) == 1


def test_seed_decides_the_draws():
    """The same seed gives the same tokens, another seed (or none) other tokens: a sampler
    that ignored the seed, or drew the same token every time, fails."""
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)

    def draws(seed):
        sampler = Sampler(SamplerSettings(seed=seed, **OPEN))
        return [sampler(logits, []) for _ in range(50)]
    first = draws(7)
    assert len(set(first)) > 10                    # a draw, not one token over and over
    assert draws(7) == first
    assert draws(8) != first
    assert draws(None) != draws(None)


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(temperature=float("nan")),
                                 dict(temperature=float("inf")), dict(top_k=-3), dict(top_p=0),
                                 dict(top_p=1.5), dict(top_p=float("nan")), dict(min_p=2),
                                 dict(repeat_penalty=0), dict(repeat_penalty=float("inf")),
                                 dict(repeat_last_n=-2), dict(seed=-2)])
def test_out_of_range_settings_raise(bad):
    (name, value), = bad.items()
    with pytest.raises(UsageError, match=f"{name}={value!r}: expected") as err:
        SamplerSettings(**bad)
    assert err.value.argument == name
