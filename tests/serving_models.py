"""A tiny Gemma 3 embedder whose tokenizer is built like Gemma's own: a SentencePiece-style
BPE over the text with spaces written as "▁", byte fallback to ``<0xNN>`` pieces, BOS added.
llama.cpp reads this kind of vocabulary as it reads Gemma's (the byte-level tokenizers of
``tests/tiny_models.py`` need a pre-tokenizer llama.cpp knows by name)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny_models import _model_config, _training_corpus

SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
SPACE = "\u2581"


def spm_style_tokenizer(vocab_size: int = 420):
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    learner = Tokenizer(models.BPE())
    learner.normalizer = normalizers.Replace(" ", SPACE)
    learner.train_from_iterator(
        _training_corpus(), trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False)
    )
    learned = json.loads(learner.to_str())["model"]
    pieces = [*SPECIALS, *(f"<0x{i:02X}>" for i in range(256))]
    pieces += sorted(learned["vocab"], key=learned["vocab"].get)
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                   fuse_unk=True)  # fmt: skip
    )
    tokenizer.normalizer = normalizers.Replace(" ", SPACE)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", add_bos_token=True, add_eos_token=False, padding_side="left",
        model_max_length=512,
    )  # fmt: skip


def build_spm_gemma3(out_dir: Path, seed: int = 0, match_attention_scale: bool = True) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = spm_style_tokenizer()
    config = _model_config("gemma3", len(tokenizer), tokenizer, hidden_size=32, num_layers=2)
    # As in every released Gemma 3 (256 and 256 in the 270M): llama.cpp scales by head_dim.
    if match_attention_scale:
        config.query_pre_attn_scalar = config.head_dim
    # llama.cpp caps each slot at the trained context: room for 512-token documents.
    config.max_position_embeddings = 1024
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


VERIFY_TEXTS = (
    "the river flows through the city", "a mountain above the valley", "music and history",
    "der Fluss und die Stadt", "la montagne et la ville", "weather over the ocean",
)  # fmt: skip


def build_verified_gguf_repo(root: Path) -> Path:
    """A tiny model repo as the release assembles it: safetensors with the serving keys, a
    Q8_0 GGUF, and ``gguf/verification.json`` with the file's check, measured here on a few
    texts through llama.cpp's server (the model card stage measures it on its tasks)."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from kit.artifacts import GgufCheck
    from kit.llama_embed import embed, embedding_server
    from model_card.gguf_check import write_verification
    from tests.tiny_models import build_tiny_sentence_transformer
    from training.gguf import export_gguf
    from training.serving import write_serving_keys

    folder = build_tiny_sentence_transformer(build_spm_gemma3(root / "decoder"), root / "model")
    model = SentenceTransformer(str(folder), device="cpu")
    write_serving_keys(folder, model)
    (path,) = export_gguf(folder, ["q8_0"], "tiny")
    texts = list(VERIFY_TEXTS)
    with embedding_server(path, 64, threads=1) as url:
        served = np.asarray(embed(url, texts, 64))
    cosines = (served * model.encode(texts, normalize_embeddings=True)).sum(axis=1)
    passed = bool(cosines.min() >= 0.99)
    write_verification(folder, [GgufCheck(
        file=path.relative_to(folder).as_posix(), type="q8_0", bytes=path.stat().st_size,
        sha256="", min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()),
        texts_compared=len(texts), scores={}, score_drops={}, speedup_vs_torch=None, threads=1,
        passed=passed, rule="minimum cosine at least 0.99 on a few texts")])  # fmt: skip
    if not passed:
        raise RuntimeError(f"the tiny Q8_0 GGUF embeds differently (cosine {cosines.min():.4f})")
    return folder
