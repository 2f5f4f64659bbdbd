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
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
