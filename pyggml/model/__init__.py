"""What a model IS: its definition, independent of where it runs.

    hparams.py    HParams: the hyperparameters of a GGUF file's metadata
    arch.py       Architecture (one per family, as data) and BlockSpec (one layer, as the
                  devices run it)
    weights.py    QMatrix, LayerWeights, ModelWeights: zero-copy views of the quantized
                  tensors
    forward.py    the readable numpy definition of a block (and rms_norm, rope, attention)
    numerics.py   where the arithmetic follows ggml bit for bit, and why

The devices that run it are pyggml.backends; the runnable Model (tokenizer, sampler,
placement) is pyggml.runtime.
"""
