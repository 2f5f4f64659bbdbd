"""The miner's embedding store: kept across builds, each text embedded once per miner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_builder.embedding_cache import EmbeddingStore, miner_key, text_key


def _encoder(calls: list[list[str]]):
    def encode(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_a_reloaded_store_embeds_only_new_texts(tmp_path: Path) -> None:
    # A digest that ends in a zero byte must survive the round trip to disk.
    tricky = next(f"text {i}" for i in range(10_000) if text_key("document", f"text {i}")[-1] == 0)
    texts = ["alpha", "banana", tricky]
    calls: list[list[str]] = []
    store = EmbeddingStore(tmp_path)
    first = store.encode("document", texts, _encoder(calls))
    assert calls == [texts] and store.embedded == 3
    store.save()
    again = EmbeddingStore(tmp_path)
    assert len(again) == 3
    both = again.encode("document", [*texts, "cherry"], _encoder(calls))
    assert calls[1:] == [["cherry"]] and again.reused == 3
    np.testing.assert_array_equal(both[:3], first)
    # The same text in another role is another embedding.
    again.encode("query", ["alpha"], _encoder(calls))
    assert calls[2:] == [["alpha"]]


def test_a_part_whose_keys_were_never_written_is_ignored(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    store.encode("document", ["alpha"], _encoder([]))
    keys = store.save()
    assert keys is not None
    keys.unlink()  # as a kill between the vectors and the keys would leave it
    assert len(EmbeddingStore(tmp_path)) == 0


def test_the_miner_key_changes_with_what_changes_embeddings() -> None:
    base = miner_key("local:model@abc", "float32", 512, {"query": "q: "})
    assert base == miner_key("local:model@abc", "float32", 512, {"query": "q: "})
    for other in (
        miner_key("local:model@abd", "float32", 512, {"query": "q: "}),
        miner_key("local:model@abc", "bfloat16", 512, {"query": "q: "}),
        miner_key("local:model@abc", "float32", 256, {"query": "q: "}),
        miner_key("local:model@abc", "float32", 512, {"query": "query: "}),
    ):
        assert other != base
