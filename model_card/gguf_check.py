"""Each GGUF file of the model, checked against the model as sentence-transformers loads it,
through the ``/v1/embeddings`` endpoint of a real llama.cpp server.

For every evaluation task the GGUF embeds the task's texts (queries with their prompt,
documents as they are); a sample of those texts is embedded by sentence-transformers too,
which gives the cosine between the two and the speed of each on the same texts in the same
run. Quantized files are also scored on the tasks with mteb, since a high cosine does not
bound a ranking change; a 16- or 32-bit file passes on its cosine alone. The verdict per
file goes into ``gguf/verification.json`` beside the files in the model repo: the Space
embeds with a GGUF only when it passed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import GgufCheck
from kit.files import atomic_write_json, sha256_file
from kit.llama_embed import embed, embedding_server
from model_card.encoders import Embedder, mteb_encoder
from model_card.tasks import EvalTask

log = logging.getLogger(__name__)

VERIFICATION_FILE = "gguf/verification.json"
MIN_COSINE = 0.999  # a 16- or 32-bit file embeds as the safetensors do
MAX_SCORE_DROP = 1.0  # points (score x 100) a quantized file may lose on any task
FULL_PRECISION = ("f32", "f16", "bf16")
SAMPLE_PER_CALL = 32
DEFAULT_BATCH = 32  # texts per encode call when the model came without an encode plan


def gguf_type(path: Path) -> str:
    return path.stem.rsplit("-", 1)[-1]


@dataclass
class Comparison:
    """What one file's encoder saw: cosines to sentence-transformers and both timings."""

    cosines: list[float] = field(default_factory=list)
    gguf_s: float = 0.0
    torch_s: float = 0.0
    texts: int = 0


class LlamaServerEncoder:
    """An mteb encoder embedding through the server; on a sample of each call's texts it
    also runs the sentence-transformers model, for the cosine and the speed ratio."""

    def __init__(self, url: str, reference: Any, trained: Embedder, name: str, revision: str,
                 prompts: dict[str, str], comparison: Comparison) -> None:  # fmt: skip
        self.url = url
        self.reference = reference
        self.trained = trained
        self.comparison = comparison
        self.max_tokens = int(trained.model.max_seq_length)
        self.mteb_model_meta = reference.mteb_model_meta.model_copy(
            update={"name": name, "revision": revision}
        )
        self.model_prompts = prompts

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:  # fmt: skip
        from mteb.models.abs_encoder import get_prompt_name

        name = get_prompt_name(self.model_prompts, task_metadata, prompt_type)
        prompt = self.model_prompts.get(name, "") if name else ""
        texts = [prompt + text for batch in inputs for text in batch["text"]]
        started = time.perf_counter()
        vectors = np.asarray(embed(self.url, texts, self.max_tokens), dtype=np.float32)
        elapsed = time.perf_counter() - started
        sample = list(range(0, len(texts), max(1, len(texts) // SAMPLE_PER_CALL)))
        started = time.perf_counter()
        reference = self.trained.model.encode(
            [texts[i] for i in sample], convert_to_numpy=True, normalize_embeddings=True
        )
        self.comparison.torch_s += time.perf_counter() - started
        self.comparison.gguf_s += elapsed * len(sample) / len(texts)
        self.comparison.texts += len(sample)
        ours = vectors[sample] / np.linalg.norm(vectors[sample], axis=1, keepdims=True)
        self.comparison.cosines.extend(float(c) for c in (ours * reference).sum(axis=1))
        return vectors

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        return self.reference.similarity(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        return self.reference.similarity_pairwise(embeddings1, embeddings2)


def check_file(path: Path, model_dir: Path, trained: Embedder, tasks: list[EvalTask],
               trained_scores: dict[str, float]) -> GgufCheck:  # fmt: skip
    """Serve one file, run every task through it (in the batches the trained model was
    evaluated in), and judge it."""
    import mteb

    kind = gguf_type(path)
    quantized = kind not in FULL_PRECISION
    prompts: dict[str, str] = {}
    for task in tasks:
        prompts.update(task.prompts())
    reference = mteb_encoder(trained, prompts)
    comparison = Comparison()
    scores: dict[str, float] = {}
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    batch_size = trained.plan.batch_size if trained.plan else DEFAULT_BATCH
    with embedding_server(path, int(trained.model.max_seq_length), threads) as url:
        encoder = LlamaServerEncoder(url, reference, trained, f"{trained.cache_name}-{kind}",
                                     sha256_file(path)[:16], prompts, comparison)  # fmt: skip
        for task in tasks:
            log.info("GGUF %s on %s", kind, task.name)
            result = mteb.evaluate(encoder, task.task, cache=None, co2_tracker=False,
                                   encode_kwargs={"batch_size": batch_size})  # fmt: skip
            (task_result,) = result.task_results
            scores[task.name] = round(float(task_result.get_score()) * 100, 2)
    drops = {name: round(trained_scores[name] - score, 2) for name, score in scores.items()}
    min_cosine = min(comparison.cosines) if comparison.cosines else 0.0
    if quantized:
        passed = all(drop <= MAX_SCORE_DROP for drop in drops.values())
        rule = f"every task within {MAX_SCORE_DROP:g} point of the safetensors model"
    else:
        passed = min_cosine >= MIN_COSINE
        rule = f"minimum cosine to the safetensors model at least {MIN_COSINE}"
    return GgufCheck(
        file=path.relative_to(model_dir).as_posix(),
        type=kind,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        min_cosine=round(min_cosine, 6),
        mean_cosine=round(float(np.mean(comparison.cosines)) if comparison.cosines else 0.0, 6),
        texts_compared=comparison.texts,
        scores=scores,
        score_drops=drops,
        speedup_vs_torch=round(comparison.torch_s / comparison.gguf_s, 2)
        if comparison.gguf_s
        else None,
        threads=threads,
        passed=passed,
        rule=rule,
    )


def gguf_files(model_dir: Path, listed: list[str]) -> list[Path]:
    return [model_dir / name for name in listed if (model_dir / name).is_file()]


def write_verification(card_dir: Path, checks: list[GgufCheck]) -> Path:
    """The verdicts, in the model repo next to the files (read by the Space)."""
    return atomic_write_json(card_dir / VERIFICATION_FILE, [asdict(c) for c in checks])
