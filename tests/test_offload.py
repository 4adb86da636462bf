"""Layer offload without a GPU: the placement plan, and the CPU <-> device boundary.

The plan is checked against hand-computed byte counts of a synthetic model.  The
boundary is exercised by running real fixture models split between the CPU and a
SimulatedDevice (a GPU stand-in with its own memory, kv caches and traffic counters):
since it does the same arithmetic as the CPU, a split model must give the very same
logits as the all-CPU model, bit for bit.
"""
import gc

import numpy as np
import pytest

from pyggml.backends import cuda
from pyggml.backends.cpu import cpu_device
from pyggml.backends.simulated import SimulatedDevice
from pyggml.errors import BackendError, UsageError
from pyggml.ggml import GGMLType
from pyggml.model.hparams import HParams
from pyggml.model.weights import LayerWeights, ModelWeights, QMatrix
from pyggml.runtime import Model
from pyggml.runtime.offload import plan_offload

# ----------------------------------------------------------------------------- the plan

N_LAYER, N_CTX = 4, 64
HP = HParams(arch="qwen2", n_vocab=1000, n_ctx_train=512, n_embd=256, n_layer=N_LAYER, n_head=4,
             n_head_kv=2, n_ff=512, head_dim=64, n_rot=64, rope_base=1e6, rms_eps=1e-6)

# Hand-computed bytes (Q4_K: 144 bytes per 256 elements, Q6_K: 210 per 256):
#   wq 256 rows x 144 = 36,864    wk, wv 128 x 144 = 18,432 each    wo 36,864
#   gate, up 512 x 144 = 73,728 each    down 256 rows x (512 / 256 * 144 = 288) = 73,728
#   norms 2 x 256 x 4 = 2,048    biases (256 + 128 + 128) x 4 = 2,048
LAYER_BYTES = 36_864 + 2 * 18_432 + 36_864 + 3 * 73_728 + 2_048 + 2_048      # 335,872
EMBD_BYTES = 1000 * 210                  # token_embd Q6_K (1000, 256): 210,000
OUTPUT_BYTES = 1000 * 210                # untied output, same shape and type
NORM_BYTES = 256 * 4                     # output_norm
KV_BYTES = 2 * N_CTX * 128 * 2           # K and V, n_ctx x n_embd_gqa fp16: 32,768 per layer


def synthetic_weights(tied: bool) -> ModelWeights:
    def matrix(name, n_out, n_in, ggml_type=GGMLType.Q4_K, type_size=144):
        return QMatrix(name, int(ggml_type), n_out, n_in,
                       np.zeros((n_out, n_in // 256 * type_size), np.uint8))

    def vector(n):
        return np.ones(n, np.float32)
    layers = [LayerWeights(attn_norm=vector(256), wq=matrix("q", 256, 256),
                           wk=matrix("k", 128, 256), wv=matrix("v", 128, 256), bq=vector(256),
                           bk=vector(128), bv=vector(128), wo=matrix("o", 256, 256),
                           ffn_norm=vector(256), w_gate=matrix("gate", 512, 256),
                           w_up=matrix("up", 512, 256), w_down=matrix("down", 256, 512))
              for _ in range(N_LAYER)]
    embd = matrix("token_embd", 1000, 256, GGMLType.Q6_K, 210)
    output = embd if tied else matrix("output", 1000, 256, GGMLType.Q6_K, 210)
    return ModelWeights(token_embd=embd, layers=layers, output_norm=vector(256), output=output)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("n_gpu_layers, first_gpu, head_on_gpu", [
    (0, 4, False), (1, 3, False), (3, 1, False), (4, 0, False),     # up to n_layer: layers only
    (5, 0, True), (-1, 0, True), (1000, 0, True),                   # n_layer + 1, all, too many
])
def test_plan_places_the_last_layers_and_counts_bytes(tied, n_gpu_layers, first_gpu, head_on_gpu):
    plan = plan_offload(HP, synthetic_weights(tied), n_gpu_layers, N_CTX)
    n_gpu = N_LAYER - first_gpu
    assert plan.first_gpu_layer == first_gpu and plan.n_gpu_layers == n_gpu
    assert plan.output_on_gpu == head_on_gpu
    assert [plan.on_gpu(i) for i in range(N_LAYER)] == [i >= first_gpu for i in range(N_LAYER)]
    head = OUTPUT_BYTES + NORM_BYTES                  # a tied output is copied with the head
    assert plan.gpu_weight_bytes == n_gpu * LAYER_BYTES + (head if head_on_gpu else 0)
    assert plan.gpu_kv_bytes == n_gpu * KV_BYTES
    assert plan.gpu_bytes == plan.gpu_weight_bytes + plan.gpu_kv_bytes
    # the embedding always stays; the head stays unless offloaded (tied: nothing extra to keep)
    cpu_head = 0 if head_on_gpu else NORM_BYTES + (0 if tied else OUTPUT_BYTES)
    assert plan.cpu_weight_bytes == first_gpu * LAYER_BYTES + EMBD_BYTES + cpu_head
    assert plan.cpu_kv_bytes == first_gpu * KV_BYTES


def test_plan_describes_placement():
    weights = synthetic_weights(True)
    assert plan_offload(HP, weights, 0, N_CTX).describe() == "all layers on the CPU"
    assert plan_offload(HP, weights, 2, N_CTX).describe().startswith("layers 2..3 on the GPU")
    assert plan_offload(HP, weights, -1, N_CTX).describe().startswith(
        "layers 0..3 + output on the GPU")


@pytest.mark.parametrize("n_gpu_layers", [-2, -100])
def test_plan_refuses_negative_counts_other_than_minus_one(n_gpu_layers):
    with pytest.raises(UsageError, match="-1"):
        plan_offload(HP, synthetic_weights(True), n_gpu_layers, N_CTX)


# ----------------------------------------------------------------------------- no CUDA

@pytest.fixture
def fresh_cuda_state(monkeypatch):
    """Forget any loaded (or failed) libpyggml_cuda, so a test can point elsewhere."""
    monkeypatch.setattr(cuda, "_state", {})


def test_cuda_device_without_library_raises_backend_error(fresh_cuda_state, monkeypatch, tmp_path):
    missing = tmp_path / "libpyggml_cuda.so"
    monkeypatch.setenv("PYGGML_CUDA_LIB", str(missing))
    with pytest.raises(BackendError, match="not built") as err:
        cuda.CudaDevice(HP, max_batch=512)
    assert str(missing) in str(err.value) and "n_gpu_layers=0" in str(err.value)


def test_cuda_device_with_a_broken_library_raises_backend_error(fresh_cuda_state, monkeypatch,
                                                                tmp_path):
    bogus = tmp_path / "libpyggml_cuda.so"
    bogus.write_bytes(b"not an ELF file")
    monkeypatch.setenv("PYGGML_CUDA_LIB", str(bogus))
    with pytest.raises(BackendError, match="cannot load"):
        cuda.CudaDevice(HP, max_batch=512)


def test_cuda_device_without_a_gpu_names_the_cuda_error(fresh_cuda_state):
    """Where the library is built but no GPU/driver exists (CI), CUDA's own reason is passed on."""
    if not cuda.library_path().exists():
        pytest.skip(f"libpyggml_cuda is not built here ({cuda.library_path()}): no CUDA toolkit")
    _, lib = cuda.load()
    ffi = cuda._state["ffi"]
    count = ffi.new("int *")
    if lib.pyggml_cuda_device_count(count) == 0 and count[0] > 0:
        pytest.skip("a CUDA device is present: this test is for machines without one")
    with pytest.raises(BackendError,
                       match=r"no usable CUDA device: cudaGetDeviceCount: .*\(cuda\w+\)"):
        cuda.CudaDevice(HP, max_batch=512)


# ----------------------------------------------------------------------------- split models

# qwen2 (NEOX, biases, tied), llama (NORM), gemma3 (every optional step of a BlockSpec, the
# embedding scale on the host, a soft-capped head; run by the C block where it is built)
FIXTURES = ["qwen2-tiny-q4_k_m", "smollm2-q4_1", "gemma3-softcap-q4_k_m"]
PROMPT = "The quick brown fox jumps over the lazy dog. 1234"


@pytest.fixture(scope="module", params=FIXTURES)
def model_file(request, model_path):
    return model_path(request.param)


def load_model(path, n_gpu_layers=0, capacity=None, n_ctx=128):
    """A Model with a SimulatedDevice of `capacity` bytes (None: exactly what the plan needs),
    doing the arithmetic of the model's own CPU device."""
    import pyggml
    gguf = pyggml.open(path)
    if n_gpu_layers == 0:
        return Model(gguf, n_ctx=n_ctx), None
    probe = Model(gguf, n_ctx=n_ctx)                  # to read hparams, weights and the plan
    plan = plan_offload(probe.hparams, probe.weights, n_gpu_layers, n_ctx)
    device = SimulatedDevice(cpu_device(probe.kernels.name),
                             plan.gpu_bytes if capacity is None else capacity)
    return Model(gguf, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, gpu=device), device


@pytest.fixture(scope="module")
def cpu_logits(model_file):
    """(prompt ids, all-CPU logits of the prompt, of one decode step after it, n_layer)"""
    model, _ = load_model(model_file)
    ids = model.tokenize(PROMPT)
    logits = model.logits(ids)
    return ids, logits, model.eval([ids[1]]), model.hparams.n_layer


def test_split_model_gives_the_cpu_logits_bit_for_bit(model_file, cpu_logits):
    """Same kernels on both sides: the bound is zero.  Prompt (all logits) and one decode step."""
    ids, expected, expected_next, n_layer = cpu_logits
    # one layer, half, all layers (head on the CPU), all and the head (n_layer + 1 plans alike)
    for n_gpu_layers in sorted({1, n_layer // 2, n_layer}) + [-1]:
        model, device = load_model(model_file, n_gpu_layers)
        got = model.logits(ids)
        np.testing.assert_array_equal(got, expected, err_msg=f"n_gpu_layers={n_gpu_layers}")
        np.testing.assert_array_equal(model.eval([ids[1]]), expected_next,
                                      err_msg=f"decode, n_gpu_layers={n_gpu_layers}")
        del model, device
        gc.collect()


@pytest.mark.parametrize("n_gpu_layers", [1, -1])
def test_device_holds_its_layers_weights_and_kv_cache(model_file, cpu_logits, n_gpu_layers):
    ids = cpu_logits[0]
    model, device = load_model(model_file, n_gpu_layers)
    plan = model.plan
    # the device's memory holds exactly what the plan counted: weights, head, kv caches
    assert device.used == plan.gpu_bytes
    assert device.traffic.uploaded == plan.gpu_weight_bytes
    for i, (where, layer) in enumerate(model.layers):
        assert (where is device) == plan.on_gpu(i)
        if where is device:      # copies in device memory, not views of the file's map
            for m, in_file in zip(layer.weights.tensors(), model.weights.layers[i].tensors()):
                if isinstance(m, QMatrix):
                    m, in_file = m.data, in_file.data
                assert m.flags.owndata and not np.shares_memory(m, in_file)
                np.testing.assert_array_equal(m, in_file)
    assert (model.head[0] is device) == plan.output_on_gpu
    model.logits(ids)
    # the offloaded layers' caches (on the device) hold the prompt's keys; the rest is empty
    for where, layer in model.layers:
        filled = np.abs(layer.k_cache[:len(ids)].astype(np.float32)).sum(axis=(1, 2))
        assert (filled > 0).all()
        assert not layer.v_cache[len(ids):].any()


@pytest.mark.parametrize("head_on_device", [False, True])
def test_only_the_hidden_state_crosses_per_token(model_file, cpu_logits, head_on_device):
    ids = cpu_logits[0]
    model, device = load_model(model_file, -1 if head_on_device else 1)
    hp = model.hparams
    model.logits(ids)
    device.traffic.reset()
    model.eval([ids[0]])                               # one decode step
    hidden = hp.n_embd * 4                             # one float32 row
    assert device.traffic.to_device == hidden          # in once, at the first GPU layer
    if head_on_device:
        assert device.traffic.to_host == 0             # nothing but the logits comes back
        assert device.traffic.logits == hp.n_vocab * 4
    else:
        assert device.traffic.to_host == hidden        # out once, to the head on the CPU
        assert device.traffic.logits == 0
    assert device.traffic.uploaded == model.plan.gpu_weight_bytes    # no weight re-uploaded


def test_out_of_device_memory_names_bytes_needed_and_free(model_file):
    import pyggml
    model, device = load_model(model_file, 2)
    needed = model.plan.gpu_bytes
    capacity = needed - 1
    small = SimulatedDevice(device.cpu, capacity)
    with pytest.raises(BackendError) as err:
        Model(pyggml.open(model_file), n_ctx=128, n_gpu_layers=2, gpu=small)
    message = str(err.value)
    assert f"{needed:,} bytes needed" in message and f"{capacity:,} bytes free" in message
    assert "n_gpu_layers" in message
    assert small.used == 0                            # refused before anything was uploaded


def test_model_without_cuda_raises_backend_error(model_file, fresh_cuda_state, monkeypatch,
                                                 tmp_path):
    """n_gpu_layers without a device injected and without a usable CUDA library: a clear error."""
    import pyggml
    monkeypatch.setenv("PYGGML_CUDA_LIB", str(tmp_path / "missing.so"))
    with pytest.raises(BackendError, match="GPU layers were asked for"):
        Model(pyggml.open(model_file), n_ctx=128, n_gpu_layers=1)
    Model(pyggml.open(model_file), n_ctx=128, n_gpu_layers=0)        # the CPU still works


def test_device_refuses_a_hidden_state_that_was_not_handed_over(model_file):
    model, device = load_model(model_file, 1)
    where, layer = model.layers[-1]
    assert where is device
    x = np.zeros((1, model.hparams.n_embd), np.float32)
    with pytest.raises(BackendError, match="to_device"):
        device.layer_forward(layer, x, 0)
    host_layer = model.layers[0][1]
    with pytest.raises(BackendError, match="does not hold"):
        device.layer_forward(host_layer, device.to_device(x), 0)


def test_device_refuses_the_steps_its_arithmetic_lacks(model_path, monkeypatch):
    """A SimulatedDevice refuses, at upload, a layer that takes steps its arithmetic lacks,
    naming the BlockSpec fields.  The C block implements every step (the split tests above
    run them), so here it is made to lack two."""
    import pyggml
    from pyggml.backends.cpu import CBlockDevice
    monkeypatch.setattr(CBlockDevice, "steps", CBlockDevice.steps - {"post_norms", "ffn_act"})
    device = SimulatedDevice(cpu_device("c"), 1 << 30)
    with pytest.raises(BackendError, match=r"C block .* does not implement post_norms=True, "
                                           r"ffn_act='gelu' yet"):
        Model(pyggml.open(model_path("gemma3-softcap-q4_k_m")), n_ctx=128, n_gpu_layers=1,
              gpu=device)
    assert device.used == 0
