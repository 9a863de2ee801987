"""Tiny random models built on the spot: one set of weights, written as a HF directory and as GGUF.

Used by the tests (a few hundred KB, cached per session) and by the benchmarks
(the same recipe at ~40M parameters). Nothing is downloaded. The weights are
made with numpy so the GGUF side needs no torch; only `write_hf` imports
transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "User: tell me a story. Assistant: Once upon a time there was a king.",
    "曹仁回城中，与众商议。曹洪曰：“目今失了彝陵，势已危急，何不拔寨早回？”",
    "孔明曰：“亮夜观天象，见东南风起，此天助也。”",
    "林黛玉道：“我为的是我的心。”宝玉笑道：“好妹妹，你且别恼。”",
    "武松在景阳冈上打死了一只老虎。孙悟空大闹天宫。",
    "你好，我是诸葛亮。天下大势，分久必合，合久必分。",
    "[bold] markup should stay literal. 1234567890 !?.,;:'\"()[]{}<>",
]


@dataclass(frozen=True)
class TinyConfig:
    arch: str = "llama"  # "llama" or "qwen2"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    context: int = 512
    vocab_target: int = 400
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def train_tokenizer(vocab_size: int):
    """A byte-level BPE trained on a few lines, Chinese included; returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return tokenizer


def make_weights(cfg: TinyConfig, vocab: int) -> dict[str, np.ndarray]:
    """Random weights under HF names (Llama/Qwen2 layout), scaled to give varied logits."""
    rng = np.random.default_rng(cfg.seed)
    kv = cfg.kv_heads * cfg.head_dim

    def dense(out_features: int, in_features: int) -> np.ndarray:
        return (rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)).astype(
            np.float32
        )

    weights = {
        "model.embed_tokens.weight": rng.standard_normal((vocab, cfg.hidden)).astype(np.float32),
        "model.norm.weight": (1 + 0.1 * rng.standard_normal(cfg.hidden)).astype(np.float32),
        "lm_head.weight": dense(vocab, cfg.hidden) * 4,
    }
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        weights |= {
            p + "input_layernorm.weight": (1 + 0.1 * rng.standard_normal(cfg.hidden)).astype(
                np.float32
            ),
            p + "post_attention_layernorm.weight": (
                1 + 0.1 * rng.standard_normal(cfg.hidden)
            ).astype(np.float32),
            p + "self_attn.q_proj.weight": dense(cfg.hidden, cfg.hidden),
            p + "self_attn.k_proj.weight": dense(kv, cfg.hidden),
            p + "self_attn.v_proj.weight": dense(kv, cfg.hidden),
            p + "self_attn.o_proj.weight": dense(cfg.hidden, cfg.hidden),
            p + "mlp.gate_proj.weight": dense(cfg.ffn, cfg.hidden),
            p + "mlp.up_proj.weight": dense(cfg.ffn, cfg.hidden),
            p + "mlp.down_proj.weight": dense(cfg.hidden, cfg.ffn),
        }
        if cfg.arch == "qwen2":
            for name, size in (("q", cfg.hidden), ("k", kv), ("v", kv)):
                weights[p + f"self_attn.{name}_proj.bias"] = (
                    0.1 * rng.standard_normal(size)
                ).astype(np.float32)
    return weights


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's RoPE row order for q/k (convert_hf_to_gguf's `permute`)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_gguf(path: Path, cfg: TinyConfig, tokenizer, weights: dict[str, np.ndarray]) -> Path:
    import gguf

    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[cfg.arch]
    writer = gguf.GGUFWriter(str(path), cfg.arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(f"tiny-{cfg.arch}")
    writer.add_context_length(cfg.context)
    writer.add_embedding_length(cfg.hidden)
    writer.add_block_count(cfg.layers)
    writer.add_feed_forward_length(cfg.ffn)
    writer.add_head_count(cfg.heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    model_json = json.loads(tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model_json["merges"]]
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if cfg.arch == "qwen2" else "gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges(merges or ["Ġ t"])
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    names = gguf.get_tensor_name_map(arch, cfg.layers)
    for hf_name, array in weights.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if cfg.arch == "llama" and hf_name.endswith("q_proj.weight"):
            array = llama_permute(array, cfg.heads)
        elif cfg.arch == "llama" and hf_name.endswith("k_proj.weight"):
            array = llama_permute(array, cfg.kv_heads)
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_hf(directory: Path, cfg: TinyConfig, tokenizer, weights: dict[str, np.ndarray]) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

    vocab = tokenizer.get_vocab()
    common = dict(
        vocab_size=len(vocab),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.context,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    config = Qwen2Config(**common) if cfg.arch == "qwen2" else LlamaConfig(**common)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, strict=True)
    model.save_pretrained(directory)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
    )
    hf_tokenizer.chat_template = CHATML
    hf_tokenizer.save_pretrained(directory)
    return directory


def build(directory: Path, cfg: TinyConfig = TinyConfig(), *, hf: bool = True) -> dict[str, Path]:
    """Write `model.gguf` (and the same weights as a HF dir `hf/`) under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(cfg.vocab_target)
    weights = make_weights(cfg, tokenizer.get_vocab_size())
    out = {"gguf": write_gguf(directory / "model.gguf", cfg, tokenizer, weights)}
    if hf:
        out["hf"] = write_hf(directory / "hf", cfg, tokenizer, weights)
    return out
