#!/usr/bin/env bash
# tools/gpu_check.sh -- build libpyggml_cuda and check GPU offload, in one go, on a GPU machine.
#
# 1. HERE (this checkout, with network and the project's .venv), once:
#        bash tools/gpu_check.sh --prepare
#    It fills .gpucheck/ (kept out of git through .git/info/exclude) with what the GPU machine
#    lacks and cannot download: cp312 wheels of cffi and pycparser, and the test model
#    qwen2-512x12-q4_k_m (~25 MB, made here with llama.cpp; the tokenizer is inside the file).
#
# 2. ON THE GPU (the device tool; one call, about 3-4 minutes on one H100):
#        run(command="bash tools/gpu_check.sh", carry=[".gpucheck"], timeout_s=480)
#    It then:
#      - installs the carried wheels into /tmp/site (no network there) and checks the tools
#      - builds libpyggml_cpu and libpyggml_cuda (sm_90 only, to save time) into pyggml/lib
#      - opens the GPU once through pyggml (device name, memory), failing loudly if it cannot
#      - runs tests/test_cuda.py -m gpu with PYGGML_REQUIRE_GPU=1 (a missing GPU fails, not skips):
#        every kernel against the CPU reference, models at n_gpu_layers 8 and -1
#      - runs tools/gpu_check.py on the model for n_gpu_layers 0, 8 and -1: logits against the
#        float reference (top-1 and bounded difference), decode tok/s, CPU RSS and GPU memory
#    The log and the results come back as $OUT/gpu_check.log and $OUT/gpu_check.jsonl.
#    Exit status: 0 when everything passed; otherwise the first failing stage's.
#
# Environment: GPU_CHECK_TOKENS (default 64) tokens generated per setting.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
CARRY=$ROOT/.gpucheck
FIXTURE=qwen2-512x12-q4_k_m
# the GPU image's Python (see /work/.library/device/KINDS.md): 3.12, numpy, numba, pytest, no cffi
WHEEL_PYTHON=3.12

prepare() {
    local venv_python=$ROOT/.venv/bin/python
    if [ ! -x "$venv_python" ]; then
        echo "prepare: no $venv_python: make the project's venv first" >&2
        return 1
    fi
    grep -qxF "/.gpucheck/" .git/info/exclude 2>/dev/null || echo "/.gpucheck/" >> .git/info/exclude
    rm -rf "$CARRY"
    mkdir -p "$CARRY/wheels" "$CARRY/cache/test-models"
    local cffi_version pycparser_version
    # the versions this venv uses, built for the GPU image's CPython
    cffi_version=$("$venv_python" -c "import cffi; print(cffi.__version__)") || return 1
    pycparser_version=$("$venv_python" -c "import pycparser; print(pycparser.__version__)") ||
        return 1
    "$venv_python" -m pip download -q --no-deps --only-binary=:all: \
        --python-version "$WHEEL_PYTHON" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/wheels" \
        "cffi==$cffi_version" "pycparser==$pycparser_version" || return 1
    local model
    model=$("$venv_python" tools/make_model.py "$FIXTURE" | tail -n 1) || return 1
    cp "$model" "$CARRY/cache/test-models/" || return 1
    echo "prepare: $CARRY holds:"
    du -ah "$CARRY" | sort -k2
    echo "now, with the device tool:"
    echo "    run(command=\"bash tools/gpu_check.sh\", carry=[\".gpucheck\"], timeout_s=480)"
}

stage() {    # stage NAME: a banner with the seconds since the start
    printf '\n==== %s (t=%ss)\n' "$1" "$SECONDS"
}

check() {    # check OUT_DIR
    local out=$1
    stage "machine"
    if [ ! -d "$CARRY/wheels" ]; then
        echo "no $CARRY/wheels: run 'bash tools/gpu_check.sh --prepare' where pip works," \
             "then carry .gpucheck" >&2
        return 2
    fi
    export PATH=$PATH:/usr/local/cuda/bin
    nvidia-smi -L || echo "nvidia-smi failed"
    command -v nvcc >/dev/null && nvcc --version | tail -n 2
    cmake --version | head -n 1
    python3 --version

    stage "python packages (carried wheels, no network)"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$CARRY"/wheels/*.whl || return 3
    export PYTHONPATH=/tmp/site:$ROOT
    export PYGGML_CACHE=$CARRY/cache            # model_path() finds the carried fixture here
    export NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONUNBUFFERED=1
    python3 - <<'EOF' || return 3
import cffi, jinja2, numba, numpy, pytest
print("cffi", cffi.__version__, "| numpy", numpy.__version__, "| numba", numba.__version__,
      "| pytest", pytest.__version__, "| jinja2", jinja2.__version__)
EOF

    stage "build (CMake: libpyggml_cpu, libpyggml_cuda for sm_90)"
    mkdir -p build
    cmake -S . -B build/gpu-check -DCMAKE_BUILD_TYPE=Release -DPYGGML_CUDA_ARCHS=90-real \
        > build/gpu-check-configure.log 2>&1 || { cat build/gpu-check-configure.log; return 4; }
    grep "pyggml:" build/gpu-check-configure.log
    cmake --build build/gpu-check --parallel "$(nproc)" 2>&1 | tail -n 5
    ls -l pyggml/lib
    [ -f pyggml/lib/libpyggml_cuda.so ] || { echo "libpyggml_cuda.so was not built" >&2; return 4; }

    stage "open the GPU through pyggml"
    python3 - <<'EOF' || return 5
from pyggml.backends.cuda import CudaDevice
from pyggml.model.hparams import HParams
hp = HParams(arch="qwen2", n_vocab=32, n_ctx_train=64, n_embd=64, n_layer=1, n_head=2, n_head_kv=1,
             n_ff=128, head_dim=32, n_rot=32, rope_base=1e4, rms_eps=1e-6)
gpu = CudaDevice(hp, max_batch=512)
free, total = gpu.mem_info()
print(f"{gpu.name}: compute {gpu.compute_capability}, {gpu.n_sm} SMs, "
      f"{free / 2**20:,.0f} of {total / 2**20:,.0f} MiB free")
EOF

    stage "tests/test_cuda.py (GPU required)"
    # -m gpu: the tests that need the device (the rest ran where the fixtures can be made)
    PYGGML_REQUIRE_GPU=1 timeout 200 python3 -m pytest tests/test_cuda.py -m gpu -q -rs --tb=short \
        --maxfail=25 -p no:cacheprovider --durations=5
    local tests_rc=$?

    stage "tools/gpu_check.py: n_gpu_layers 0, 8, -1"
    local model
    model=$(python3 tools/make_model.py "$FIXTURE" | tail -n 1) || return 6
    timeout 180 python3 tools/gpu_check.py "$model" --n-gpu-layers 0 8 -1 \
        --tokens "${GPU_CHECK_TOKENS:-64}" --json "$out/gpu_check.jsonl"
    local check_rc=$?

    stage "done"
    echo "tests/test_cuda.py exit $tests_rc, tools/gpu_check.py exit $check_rc"
    [ "$tests_rc" -eq 0 ] || return 7
    [ "$check_rc" -eq 0 ] || return 8
}

case "${1:-}" in
    --prepare) prepare ;;
    "")
        out=${OUT:-/tmp/gpu_check_out}      # the device tool returns what is under $OUT
        mkdir -p "$out"
        check "$out" 2>&1 | tee "$out/gpu_check.log"
        exit "${PIPESTATUS[0]}" ;;
    *) echo "usage: bash tools/gpu_check.sh [--prepare]" >&2; exit 2 ;;
esac
