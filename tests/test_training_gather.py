"""In-batch negatives gathered across processes: two gloo workers on CPU, each holding half
of a batch, must each get the InfoNCE loss of their own anchors against the documents of
both workers, as one process would with the whole batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

QUESTIONS = [f"query {word} about the river" for word in ("one", "two", "three", "four")]
SHORT = ["ocean", "the mountain city and its long history of music", "sport", "weather a"]
PASSAGES = [f"passage {i} on the {w}" for i, w in enumerate(("river", "sea", "city", "sport"))]
NOTES = ["ocean text", "history of music in the city", "sport topic", "weather report"]
# Interleaved so that each worker's half holds both kinds of rows.
ANCHORS = [text for pair in zip(QUESTIONS, SHORT, strict=True) for text in pair]
POSITIVES = [text for pair in zip(PASSAGES, NOTES, strict=True) for text in pair]
NEGATIVES = [f"unrelated label {i}" for i in range(8)]
WORLD = 2


def _worker(rank: int, base: str, port: int, out_dir: str) -> None:
    import os

    launcher_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    os.environ.update({**launcher_env, "RANK": str(rank), "WORLD_SIZE": str(WORLD)})
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from kit.embedder import build_embedder
        from kit.instructions import release_prompts
        from training.loss import BucketedCachedInfoNCELoss

        model = build_embedder(base, 32, release_prompts()).eval()
        half = len(ANCHORS) // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        columns = [model.preprocess(texts[rows]) for texts in (ANCHORS, POSITIVES, NEGATIVES)]
        loss = BucketedCachedInfoNCELoss(
            model, scale=50.0, mini_batch_size=2, gather_across_devices=True
        )
        with torch.no_grad():
            value = float(loss(columns, None))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"loss": value}))
        # Rank 0 hosts the rendezvous store: tearing down while the other worker is still
        # finishing its last collective aborts that worker (seen once in CI as SIGABRT).
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_each_worker_scores_its_anchors_against_all_workers_documents(tiny_model_dirs, tmp_path):
    from kit.embedder import build_embedder
    from kit.instructions import release_prompts
    from kit.net import free_port

    base = str(tiny_model_dirs["qwen2"])
    torch.multiprocessing.spawn(
        _worker, args=(base, free_port(), str(tmp_path)), nprocs=WORLD, join=True
    )
    model = build_embedder(base, 32, release_prompts()).eval()
    anchors = model.encode(ANCHORS, convert_to_tensor=True)
    documents = model.encode(POSITIVES + NEGATIVES, convert_to_tensor=True)
    logits = anchors @ documents.T * 50.0
    per_anchor = torch.logsumexp(logits, dim=1) - logits.diagonal()
    half = len(ANCHORS) // WORLD
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())["loss"]
        want = per_anchor[rank * half : (rank + 1) * half].mean()
        local_only = (
            anchors[rank * half : (rank + 1) * half]
            @ torch.cat(
                [
                    documents[rank * half : (rank + 1) * half],
                    documents[8 + rank * half : 8 + (rank + 1) * half],
                ]
            ).T
            * 50.0
        )
        assert got == pytest.approx(float(want), abs=1e-4)
        local_loss = (torch.logsumexp(local_only, dim=1) - local_only.diagonal()).mean()
        assert abs(got - float(local_loss)) > 1e-3, "the loss must see the other worker's documents"
