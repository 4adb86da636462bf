"""llama-quantize's file types and the type each tensor gets in them (llama.cpp's
src/llama-quant.cpp: llama_tensor_get_type and its helpers, tools/quantize's names).

A file type ("Q4_K_M") is not one ggml type: it names a default type (Q4_K) and a set
of rules that give some tensors more bits (where quantization error hurts most: the
output head, attn_v, the first and last ffn_down) or fewer, by the tensor's role, its
layer and the model's shape.  This module is those rules, as data and one function
that reads like llama.cpp's; it needs tensor names, shapes and a few hyperparameters,
never file bytes:

    plan = Mix("Q4_K_M", ModelShape("qwen2", n_layer=24, n_head=14, n_head_kv=2))
    plan.tensor_type(name, shape, current_type) -> the type llama-quantize writes

Call ``tensor_type`` for every tensor in ``llama_order`` (llama.cpp counts the attn_v
and ffn_down tensors as it goes, and the order also is that of the tensors in its
output).  ``fallbacks`` lists the tensors whose rows did not fit the chosen type.
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import UsageError
from ..ggml import TYPE_TRAITS, GGMLType

T = GGMLType

# llama-quantize's file types (tools/quantize/quantize.cpp QUANT_OPTIONS) and the default
# tensor type of each (llama_ftype_get_default_type)
FILE_TYPES: dict[str, GGMLType] = {
    "Q1_0": T.Q1_0, "Q2_0": T.Q2_0, "Q4_0": T.Q4_0, "Q4_1": T.Q4_1, "MXFP4_MOE": T.MXFP4,
    "Q5_0": T.Q5_0, "Q5_1": T.Q5_1, "IQ2_XXS": T.IQ2_XXS, "IQ2_XS": T.IQ2_XS,
    "IQ2_S": T.IQ2_XS, "IQ2_M": T.IQ2_S, "IQ1_S": T.IQ1_S, "IQ1_M": T.IQ1_M,
    "TQ1_0": T.TQ1_0, "TQ2_0": T.TQ2_0, "Q2_K": T.Q2_K, "Q2_K_S": T.Q2_K,
    "IQ3_XXS": T.IQ3_XXS, "IQ3_S": T.IQ3_S, "IQ3_M": T.IQ3_S, "IQ3_XS": T.IQ3_S,
    "Q3_K_S": T.Q3_K, "Q3_K_M": T.Q3_K, "Q3_K_L": T.Q3_K, "IQ4_NL": T.IQ4_NL,
    "IQ4_XS": T.IQ4_XS, "Q4_K_S": T.Q4_K, "Q4_K_M": T.Q4_K, "Q5_K_S": T.Q5_K,
    "Q5_K_M": T.Q5_K, "Q6_K": T.Q6_K, "Q8_0": T.Q8_0, "F16": T.F16, "BF16": T.BF16,
    "F32": T.F32,
}
# llama-quantize's other names for three of them
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
FLOATS = (T.F32, T.F16, T.BF16)

# tensor_type_fallback: rows (ne[0]) that are not a whole number of the type's blocks
# take a type with smaller blocks -- the 256-weight i-quants IQ4_NL, the low-bit types
# Q4_0, the K-quants the legacy type of about their bits -- and F16 if even that does
# not fit
FALLBACK = {T.IQ1_S: T.IQ4_NL, T.IQ1_M: T.IQ4_NL, T.IQ2_XXS: T.IQ4_NL, T.IQ2_XS: T.IQ4_NL,
            T.IQ2_S: T.IQ4_NL, T.IQ3_XXS: T.IQ4_NL, T.IQ3_S: T.IQ4_NL, T.IQ4_XS: T.IQ4_NL,
            T.Q2_0: T.Q4_0, T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.TQ1_0: T.Q4_0, T.TQ2_0: T.Q4_0,
            T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}

# types whose quantizer is worthless without an importance matrix (tensor_requires_imatrix)
NEEDS_IMATRIX = (T.IQ3_XXS, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_M, T.IQ1_S)

# tensors llama.cpp never quantizes (tensor_allows_quantization): anything but 2-D and
# 3-D tensors named *weight, and these (small, or not weights in the usual sense)
KEPT_SUBSTRINGS = (
    "_norm.weight",                       # norms
    "ffn_gate_inp.weight",                # expert routers
    "ffn_gate_tid2eid.weight",            # DeepSeek-V4's i32 token -> expert table
    "altup", "laurel",                    # Gemma 3n's tiny ones
    "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight",  # Mamba / Kimi's small conv1d
    "indexer.k_proj.weight", "indexer.q_proj.weight",   # MiniMax's tiny indexer
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",   # RWKV's small
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",      # 2-D weights
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",                  # T5's relative position bias
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",   # multimodal
    ".patch_embd", ".patch_merger",
    "a.rvq.codebook", "mm.a.code_embd",   # audio codebooks
)
KEPT_NAMES = ("position_embd.weight", "token_types.weight")    # BERT's
KEPT_GLM5_NEXT = ("hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj",
                  "indexer_compressor_gate", "indexer_compressor_ape", "ssm_f_a.weight",
                  "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight", "ssm_beta.weight",
                  "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight")

# llama.cpp's LLM_TYPE_70B (the only model size the rules look at): block counts by
# architecture; llama's only when attention is grouped (else it is the 65B)
SEVENTY_B_LAYERS = {"llama": 80, "qwen2": 80, "deci": 80, "olmo": 80, "jais2": 68}

# sscanf(name, "blk.%d.", &layer): the layer number of a tensor name
LAYER = re.compile(r"blk\.\s*([+-]?\d+)")

# the i-quant file types that treat the output head (Q5_K; IQ3_XXS's too) and attention alike
IQ_LOW = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def parse_file_type(text: str) -> str:
    """A file type as llama-quantize spells it (case-insensitive, aliases resolved)."""
    name = ALIASES.get(text.upper(), text.upper())
    if name not in FILE_TYPES:
        raise UsageError(f"TYPE {text!r}: not a llama-quantize file type; one of "
                         f"{', '.join(list(FILE_TYPES) + list(ALIASES))}", argument="type")
    return name


def llama_order(names) -> list[str]:
    """Tensor names in llama.cpp's order (llama_model_loader's weights_map): by the layer
    number of "blk.N." (tensors of no layer first), then by name."""
    def key(name):
        match = LAYER.match(name)
        return (int(match.group(1)) if match else -1, name.encode("utf-8", "surrogateescape"))
    return sorted(names, key=key)


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third
    layer between them."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or \
        (i_layer - n_layers // 8) % 3 == 2


def n_dims(shape) -> int:
    """ggml_n_dims: dimensions up to the last one longer than 1 (numpy order reversed)."""
    ne = tuple(shape)[::-1]
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the rules read of a model: its architecture (general.architecture) and
    <arch>.block_count, attention.head_count, attention.head_count_kv (layer 0's where
    these are per layer) and expert_count."""
    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        """Query heads per kv head (hparams.n_gqa(): 0 without kv heads)."""
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        return (SEVENTY_B_LAYERS.get(self.arch) == self.n_layer
                and (self.arch != "llama" or self.n_head != self.n_head_kv))


def category(name: str) -> str:
    """tensor_get_category: the broad role of a tensor by its name."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part, role in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                       ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                       ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                       ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if part in name:
            return role
    return "other"


def is_attn_v(role: str) -> bool:
    """attn_v and the fused tensors that hold it (more sensitive to quantization)."""
    return role in ("attn_v", "attn_qkv", "attn_kv_b")


def allows_quantization(name: str, shape, arch: str, *, quantize_output: bool = True) -> bool:
    """tensor_allows_quantization: only 2-D and 3-D weights, not the KEPT ones."""
    if n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name == "output.weight" and not quantize_output:
        return False
    if name in KEPT_NAMES or any(part in name for part in KEPT_SUBSTRINGS):
        return False
    return not (arch == "glm5-next" and any(part in name for part in KEPT_GLM5_NEXT))


def requires_imatrix(name: str, new_type: GGMLType, ftype: str) -> bool:
    """tensor_requires_imatrix: the very-low-bit types (and Q2_K in a Q2_K_S file), except
    in the embedding and output head."""
    if category(name) in ("token_embd", "output"):
        return False
    return new_type in NEEDS_IMATRIX or (new_type == T.Q2_K and ftype == "Q2_K_S")


class Mix:
    """llama-quantize's choices for one model and file type (quantize_state_impl).

    ftype                  a FILE_TYPES name
    model                  the ModelShape
    tensor_names           every tensor of the model (to count attn_v and see whether
                           output.weight exists: without it the embedding is the output)
    pure                   --pure: the default type for every weight (fallbacks apply)
    output_tensor_type     --output-tensor-type, token_embedding_type --token-embedding-type
    has_imatrix            an importance matrix is given (some rules spend bits without)
    quantize_output        False: --leave-output-tensor
    """

    def __init__(self, ftype: str, model: ModelShape, tensor_names, *, pure: bool = False,
                 output_tensor_type: GGMLType | None = None,
                 token_embedding_type: GGMLType | None = None, has_imatrix: bool = False,
                 quantize_output: bool = True):
        self.ftype, self.model, self.pure = ftype, model, pure
        self.default_type = FILE_TYPES[ftype]
        self.output_tensor_type = output_tensor_type
        self.token_embedding_type = token_embedding_type
        self.has_imatrix, self.quantize_output = has_imatrix, quantize_output
        roles = [category(name) for name in tensor_names]
        self.n_attention_wv = sum(is_attn_v(role) for role in roles)
        self.has_tied_embeddings = "output" not in roles
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = model.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.fallbacks: list[tuple[str, GGMLType, GGMLType]] = []   # (name, wanted, written)

    def tensor_type(self, name: str, shape, current: GGMLType) -> GGMLType:
        """llama_tensor_get_type: the type this tensor is written in."""
        if not allows_quantization(name, shape, self.model.arch,
                                   quantize_output=self.quantize_output):
            return current
        role = category(name)
        if self.token_embedding_type is not None and role == "token_embd":
            return self.token_embedding_type
        if self.output_tensor_type is not None and role == "output":
            return self.output_tensor_type
        if self.default_type in FLOATS:
            return self.default_type
        new_type = self.default_type
        if not self.pure:
            new_type = self._mixed_type(name, shape, role, new_type)
        return self._fallback(name, shape, new_type)

    def _fallback(self, name: str, shape, wanted: GGMLType) -> GGMLType:
        """tensor_type_fallback: a type whose blocks fit the rows, else F16."""
        n_cols = shape[-1]
        if n_cols % TYPE_TRAITS[wanted][0] == 0:
            return wanted
        new_type = FALLBACK.get(wanted)
        if new_type is None:
            if TYPE_TRAITS[wanted][0] > 32:
                raise UsageError(f"{name}: rows of {n_cols} are not whole {wanted.name} blocks, "
                                 f"and llama.cpp defines no fallback type for {wanted.name}")
            new_type = wanted                 # a 32-weight type: nothing smaller but F16
        if n_cols % TYPE_TRAITS[new_type][0]:
            new_type = T.F16                  # "must use F16 due to unusual shape"
        self.fallbacks.append((name, wanted, new_type))
        return new_type

    def _mixed_type(self, name: str, shape, role: str, new_type: GGMLType) -> GGMLType:
        """llama_tensor_get_type_impl, rule for rule (llama.cpp's comments quoted)."""
        ftype, model = self.ftype, self.model
        arch = model.arch
        n_expert = max(1, model.n_expert)

        def layer_info(i_layer: int, n_layer: int) -> tuple[int, int]:
            # "experts" in the FFN of Mixtral-8x7B are not consecutive, so with experts
            # the layer comes from the tensor's name
            if n_expert > 1:
                match = LAYER.match(name)
                if not match:
                    raise UsageError(f"{name}: cannot tell the layer of a tensor of an expert model")
                i_layer = int(match.group(1))
                if not 0 <= i_layer < n_layer:
                    raise UsageError(f"{name}: layer {i_layer} is not in [0, {n_layer})")
            return i_layer, n_layer

        # glm5-next: these are not quantized below Q8_0 by default
        if arch == "glm5-next" and any(part in name for part in ("attn_q_a", "attn_q_b",
                                                                 "nextn.eh_proj")):
            return new_type if new_type in FLOATS else T.Q8_0

        # the token embeddings of a model whose output head is the embedding (tied) are
        # quantized as the output tensor
        if role == "output" or (self.has_tied_embeddings and role == "token_embd"):
            if self.output_tensor_type is not None:
                return self.output_tensor_type
            if ftype == "MXFP4_MOE":
                return T.Q8_0
            if arch == "falcon" or shape[-1] % TYPE_TRAITS[new_type][0]:
                return T.Q8_0
            if ftype in IQ_LOW or ftype == "IQ3_XXS":
                return T.Q5_K
            return new_type if new_type == T.Q8_0 else T.Q6_K

        if ftype == "MXFP4_MOE":
            # MoE tensors -> MXFP4, other tensors -> Q8_0 (bailingmoe3's MLA projections are
            # 3-D too: only its expert FFN counts)
            experts = len(shape) >= 3 and shape[-3] > 1
            if experts and (arch != "bailingmoe3" or role in ("ffn_up", "ffn_gate", "ffn_down")):
                return T.MXFP4
            return T.Q8_0

        if role == "token_embd":
            if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                return T.Q2_K
            if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                return T.IQ3_S
            if ftype in ("TQ1_0", "TQ2_0", "Q2_0"):
                return T.Q4_K
            return new_type

        if ftype in IQ_LOW:
            iq2_s_or_m = ftype in ("IQ2_S", "IQ2_M")
            if is_attn_v(role):
                if model.n_gqa >= 4 or model.n_expert >= 4:
                    new_type = T.Q4_K
                else:
                    new_type = T.IQ3_S if iq2_s_or_m else T.Q2_K
                self.i_attention_wv += 1
            elif model.n_expert == 8 and role == "attn_k":
                new_type = T.Q4_K
            elif role == "ffn_down":
                if self.i_ffn_down < self.n_ffn_down // 8:
                    new_type = T.IQ3_S if iq2_s_or_m else T.Q2_K
                self.i_ffn_down += 1
            elif role == "attn_output":
                if model.n_expert == 8:
                    new_type = T.Q5_K
                elif ftype in ("IQ1_S", "IQ1_M"):
                    new_type = T.IQ2_XXS
                elif iq2_s_or_m:
                    new_type = T.IQ3_S
            return new_type

        if is_attn_v(role):
            i, n = self.i_attention_wv, self.n_attention_wv
            if ftype == "Q2_K":
                new_type = T.Q4_K if model.n_gqa >= 4 else T.Q3_K
            elif ftype == "Q2_K_S" and model.n_gqa >= 4:
                new_type = T.Q4_K
            elif ftype == "IQ3_XXS":
                new_type = T.Q4_K if model.n_gqa >= 4 else T.IQ3_XXS if self.has_imatrix else T.IQ3_S
            elif ftype in ("IQ3_XS", "IQ3_S") and model.n_gqa >= 4:
                new_type = T.Q4_K
            elif ftype == "IQ3_M":
                new_type = T.Q4_K
            elif ftype == "Q3_K_M":
                new_type = T.Q5_K if i < 2 else T.Q4_K
            elif ftype == "Q3_K_L":
                new_type = T.Q5_K
            elif ftype in ("IQ4_NL", "IQ4_XS") and model.n_gqa >= 4:
                new_type = T.Q5_K
            elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
                new_type = T.Q6_K
            elif ftype == "Q4_K_S" and i < 4:
                new_type = T.Q5_K
            if model.is_70b and new_type in (T.Q3_K, T.Q4_K):
                # "In the 70B model we have 8 heads sharing the same attn_v weights. As a
                # result, the attn_v.weight tensor is 8x smaller compared to attn_q.weight.
                # Hence, we can get a nice boost in quantization accuracy with nearly
                # negligible increase in model size by quantizing this tensor with more bits"
                new_type = T.Q5_K
            if model.n_expert == 8:
                # "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
                new_type = T.Q8_0
            self.i_attention_wv += 1
        elif role == "attn_k":
            if model.n_expert == 8:
                new_type = T.Q8_0             # the same ~128MB trade as attn_v
            elif ftype == "IQ3_XS":
                new_type = T.IQ3_XXS
            elif ftype == "IQ3_XXS":
                new_type = T.IQ2_S
        elif role == "attn_q":
            if ftype == "IQ3_XS":
                new_type = T.IQ3_XXS
            elif ftype == "IQ3_XXS":
                new_type = T.IQ2_S
        elif role == "ffn_down":
            i_layer, n_layer = layer_info(self.i_ffn_down, self.n_ffn_down)
            if ftype == "Q2_K":
                new_type = T.Q3_K
            elif ftype == "Q2_K_S":
                if i_layer < n_layer // 8:
                    new_type = T.Q4_K
            elif ftype == "IQ3_XXS" and not self.has_imatrix:
                new_type = T.Q4_K if i_layer < n_layer // 8 else T.Q3_K
            elif ftype == "Q3_K_M":
                new_type = (T.Q5_K if i_layer < n_layer // 16 else
                            T.Q4_K if arch != "falcon" or use_more_bits(i_layer, n_layer) else
                            T.Q3_K)
            elif ftype == "IQ3_M" and (i_layer < n_layer // 8 or (
                    model.n_expert == 8 and use_more_bits(i_layer, n_layer))):
                new_type = T.Q4_K
            elif ftype == "Q3_K_L":
                new_type = T.Q4_K if arch == "falcon" else T.Q5_K
            elif ftype == "Q4_K_M":
                if arch == "falcon":
                    new_type = (T.Q6_K if i_layer < n_layer // 16 else
                                T.Q5_K if use_more_bits(i_layer, n_layer) else T.Q4_K)
                elif use_more_bits(i_layer, n_layer):
                    new_type = T.Q6_K
            elif i_layer < n_layer // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not self.has_imatrix:
                new_type = T.Q5_K
            elif ftype == "Q5_K_M" and use_more_bits(i_layer, n_layer):
                new_type = T.Q6_K
            elif ftype == "Q4_K_S" and arch != "falcon" and i_layer < n_layer // 8:
                new_type = T.Q5_K
            elif ftype in ("Q4_0", "Q5_0") and self.has_imatrix and i_layer < n_layer // 8:
                # "Guard against craziness in the first few ffn_down layers that can happen
                # even with imatrix for Q4_0/Q5_0. We only do it when an imatrix is provided
                # because a) we want to make sure that one can always get the same
                # quantization as before imatrix stuff, and b) Q4_1/Q5_1 do go crazy on
                # ffn_down without an imatrix."
                new_type = T.Q4_1 if ftype == "Q4_0" else T.Q5_1
            self.i_ffn_down += 1
        elif role == "attn_output":
            if arch != "falcon":
                if model.n_expert == 8:
                    if ftype in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL",
                                 "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"):
                        new_type = T.Q5_K
                elif ftype == "Q2_K":
                    new_type = T.Q3_K
                elif ftype == "IQ3_XXS":
                    new_type = T.IQ3_S
                elif ftype in ("Q3_K_M", "IQ3_M"):
                    new_type = T.Q4_K
                elif ftype == "Q3_K_L":
                    new_type = T.Q5_K
            elif ftype == "Q3_K_L":
                new_type = T.Q4_K
        # (llama.cpp also has rules for attn_qkv here, after attn_output; they never run,
        # because attn_qkv takes the attn_v rules above)
        elif role in ("ffn_gate", "ffn_up"):
            counter = "i_ffn_gate" if role == "ffn_gate" else "i_ffn_up"
            i_layer, n_layer = layer_info(getattr(self, counter), self.n_ffn_gate)
            if ftype == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
                new_type = T.IQ3_XXS
            setattr(self, counter, getattr(self, counter) + 1)
        return new_type
