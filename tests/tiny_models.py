"""Tiny random-weight decoders with tokenizers trained here, so no test touches a hub.

Each family copies the special-token habits of its real counterpart, because those habits
are what breaks last-token pooling: Gemma and Mistral prepend BOS and append no EOS, Qwen2
adds neither and pads with its EOS token, Mistral has no pad token at all, and Gemma pads on
the left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORDS = (
    "the a query document answer question retrieve search find similar text sentence "
    "passage label topic science history music sport weather city river mountain ocean "
    "der die das und ist ein eine frage antwort suche text stadt fluss berg "
    "le la les et est une question réponse recherche ville rivière montagne "
    "el la los y es una pregunta respuesta búsqueda ciudad río montaña "
    "это вопрос ответ поиск город река гора 東京 質問 回答 検索 北京 问题 答案 搜索"
).split()


@dataclass(frozen=True)
class Family:
    bos: str | None
    eos: str
    pad: str | None
    unk: str | None
    add_bos: bool
    padding_side: str = "right"


FAMILIES: dict[str, Family] = {
    "gemma3": Family(
        bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", add_bos=True, padding_side="left"
    ),
    "qwen2": Family(bos=None, eos="<|endoftext|>", pad="<|endoftext|>", unk=None, add_bos=False),
    "mistral": Family(bos="<s>", eos="</s>", pad=None, unk="<unk>", add_bos=True),
}


def _training_corpus() -> list[str]:
    lines = []
    for i in range(400):
        picked = [WORDS[(i * 7 + j * 13) % len(WORDS)] for j in range(3 + i % 9)]
        lines.append(" ".join(picked) + f" {i}.")
    return lines


def train_tokenizer(family: Family, vocab_size: int = 400):
    """A byte-level BPE tokenizer with the family's BOS/EOS/pad conventions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (family.pad, family.bos, family.eos, family.unk) if t]
    specials = list(dict.fromkeys(specials))
    tokenizer = Tokenizer(models.BPE(unk_token=family.unk))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    if family.add_bos:
        bos_id = tokenizer.token_to_id(family.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A $B",
            special_tokens=[(family.bos, bos_id)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token=family.unk,
        add_bos_token=family.add_bos,
        add_eos_token=False,
        padding_side=family.padding_side,
        model_max_length=512,
    )


def _model_config(family_name: str, vocab_size: int, tokenizer, hidden_size: int, num_layers: int):
    from transformers import Gemma3TextConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // 16,
        num_key_value_heads=1,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if family_name == "gemma3":
        return Gemma3TextConfig(head_dim=16, sliding_window=64, **common)
    if family_name == "qwen2":
        return Qwen2Config(**common)
    return MistralConfig(head_dim=16, sliding_window=None, **common)


def build_tiny_decoder(
    family_name: str,
    out_dir: Path,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 400,
) -> Path:
    """Save a small causal LM of ``family_name`` with its tokenizer into ``out_dir``.

    The defaults keep tests fast; the training benchmark asks for a wider model so that its
    time goes into per-token work, as it does in a real-size model, not per-call overhead.
    """
    import torch
    from transformers import AutoModelForCausalLM

    family = FAMILIES[family_name]
    tokenizer = train_tokenizer(family, vocab_size)
    config = _model_config(family_name, len(tokenizer), tokenizer, hidden_size, num_layers)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


QUERY_PROMPT = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
)


def build_tiny_sentence_transformer(
    decoder_dir: Path, out_dir: Path, max_seq_length: int = 64
) -> Path:
    """Wrap a tiny decoder the way the release does: EOS appended, lasttoken pooling, Normalize."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer

    # transformers 5 rebuilds the post-processor from both flags: asking for EOS alone drops
    # the BOS that the family's tokenizer adds by default.
    base = AutoTokenizer.from_pretrained(decoder_dir)
    adds_bos = base.bos_token_id is not None and base("x").input_ids[0] == base.bos_token_id
    transformer = Transformer(
        str(decoder_dir),
        max_seq_length=max_seq_length,
        processor_kwargs={"add_eos_token": True, "add_bos_token": adds_bos},
    )
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": QUERY_PROMPT, "document": ""},
    )
    model.save(str(out_dir))
    return out_dir
