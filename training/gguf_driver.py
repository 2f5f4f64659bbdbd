"""``python training/gguf_driver.py CONVERTER_DIR MODEL_DIR [converter options]``: llama.cpp's
converter, told how to read a sentence-transformers folder of a decoder.

Run in a child process because the converter must import the ``gguf-py`` it ships with, not
the ``gguf`` release installed beside transformers. Its classes are loaded from the pinned
converter folder by name (``importlib``), since they are files of that folder and no
installed package. Two things change, both through the converter's own registry:

- ``Gemma3TextModel`` (what a Gemma 3 embedder saves) is converted as Gemma 3, a causal
  decoder, instead of as EmbeddingGemma, whose graph is bidirectional;
- the pooling type is read from the folder's ``modules.json`` (last token), and the
  vocabulary is read from ``tokenizer.json``, the tokenizer sentence-transformers loads (a
  base made from a GGUF has no ``tokenizer.model``). Each piece's score is minus the rank of
  the first merge that makes it, so llama.cpp merges in the order transformers does.

``tokenizer_config.json`` and the ``tokenizer.json`` post-processor say BOS and EOS are
added, so the file tells llama.cpp to add both: no server flag is needed.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _load(converter: Path) -> tuple[Any, Any, Any, Any]:
    sys.path[:0] = [str(converter), str(converter / "gguf-py")]
    gguf = importlib.import_module("gguf")
    script = importlib.import_module("convert_hf_to_gguf")
    conversion = importlib.import_module("conversion")
    gemma = importlib.import_module("conversion.gemma")
    return gguf, script, conversion, gemma


def merge_rank_scores(vocab: dict[str, int], merges: list[Any]) -> dict[str, float]:
    """Score of each piece: minus the rank of the first merge that builds it; pieces no
    merge builds rank after every merge, in id order."""
    rank: dict[str, int] = {}
    for position, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank.setdefault(left + right, position)
    return {piece: -float(rank.get(piece, len(merges) + i)) for piece, i in vocab.items()}


def write_spm_vocab(model: Any, gguf: Any, types: Any) -> None:
    """A byte-fallback BPE ``tokenizer.json`` written as llama.cpp's SentencePiece vocab."""
    tokenizer = json.loads((model.dir_model / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = tokenizer["model"]
    if bpe.get("type") != "BPE" or not bpe.get("byte_fallback"):
        raise SystemExit(
            "the tokenizer is not a SentencePiece-style BPE with byte fallback; "
            "add its tokenizer.model to the folder"
        )
    vocab: dict[str, int] = bpe["vocab"]
    size = int(model.hparams.get("vocab_size") or len(vocab))
    tokens = [f"[PAD{i}]".encode() for i in range(size)]
    scores = [-1e9] * size
    kinds = [types.UNUSED] * size
    for piece, score in merge_rank_scores(vocab, bpe["merges"]).items():
        i = vocab[piece]
        if i < size:
            tokens[i], scores[i] = piece.encode("utf-8"), score
            kinds[i] = types.BYTE if BYTE_TOKEN.fullmatch(piece) else types.NORMAL
    if bpe.get("unk_token") in vocab:
        kinds[vocab[bpe["unk_token"]]] = types.UNKNOWN
    for added in tokenizer["added_tokens"]:
        i = added["id"]
        if i < size:
            tokens[i] = added["content"].encode("utf-8")
            kinds[i] = types.CONTROL if added["special"] else types.USER_DEFINED
    writer = model.gguf_writer
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_add_space_prefix(False)
    gguf.SpecialVocab(model.dir_model, n_vocab=size).add_to_gguf(writer)


def check_attention_scale(hparams: dict[str, Any]) -> None:
    """llama.cpp scales Gemma 3's attention by ``head_dim`` and the file has no key for
    ``query_pre_attn_scalar``: a model where the two differ would be served wrong."""
    head_dim = hparams.get("head_dim", 256)
    scalar = hparams.get("query_pre_attn_scalar", head_dim)
    if scalar != head_dim:
        raise SystemExit(
            f"query_pre_attn_scalar ({scalar}) differs from head_dim ({head_dim}); llama.cpp "
            "scales Gemma 3 attention by head_dim, so the GGUF would embed differently"
        )


def register_embedders(gguf: Any, conversion: Any, gemma: Any) -> None:
    types = conversion.SentencePieceTokenTypes

    @conversion.ModelBase.register("Gemma3TextModel")
    class CausalGemma3Embedder(gemma.Gemma3Model):
        model_arch = gguf.MODEL_ARCH.GEMMA3

        def set_vocab(self) -> None:
            if (self.dir_model / "tokenizer.model").is_file():
                super().set_vocab()
            else:
                write_spm_vocab(self, gguf, types)

        def set_gguf_parameters(self) -> None:
            check_attention_scale(self.hparams)
            super().set_gguf_parameters()
            self._try_set_pooling_type()


def main() -> None:
    converter = Path(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    gguf, script, conversion, gemma = _load(converter)
    register_embedders(gguf, conversion, gemma)
    script.main()


if __name__ == "__main__":
    main()
