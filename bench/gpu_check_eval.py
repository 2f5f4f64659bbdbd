"""The GPU check's evaluation phase: the model card's own evaluation on the device at hand.

One small local task (the carried STS17 en-en pairs) is evaluated for a trained model and its
base, exactly as ``python -m model_card`` does it: the trained model loaded as users load it,
the base wrapped by the kit's recipe, both on the device, precision and batch size that
``kit.devices`` picks (on a GPU: CUDA, bf16 for these decoders, a batch fitted to the free
memory). The "trained" model is the base's own weights saved as a sentence-transformers
folder, so the two scores must agree: a difference means the release and the recipe embed
differently on that device. Weights are random (no weights travel): at real size a
Qwen2.5-0.5B-shaped decoder at 512 tokens, at ``tiny`` size a toy one on CPU in seconds (a
test runs it, so the phase cannot rot while no GPU is at hand).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STS17 = REPO / "model_card" / "evaldata" / "sts17" / "en-en.tsv"
REAL = {"family": "qwen2", "hidden_size": 896, "num_layers": 24, "max_length": 512, "pairs": 0}
TINY = {"family": "qwen2", "hidden_size": 32, "num_layers": 2, "max_length": 64, "pairs": 24}
# Trained and base are the same weights: their scores may differ by rounding only.
AGREEMENT = 0.01


def _models(work: Path, size: dict[str, Any]) -> tuple[Path, Path]:
    """A random-weight decoder of the size, and the same weights as a release folder."""
    from tests.tiny_models import build_tiny_decoder, build_tiny_sentence_transformer

    decoder = build_tiny_decoder(size["family"], work / "base", hidden_size=size["hidden_size"],
                                 num_layers=size["num_layers"])  # fmt: skip
    release = build_tiny_sentence_transformer(decoder, work / "trained", size["max_length"])
    return decoder, release


def _peak_memory_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _run(embedder: Any, task: Any, eval_dir: Path) -> dict[str, Any]:
    """One fresh evaluation of the task by the model card's evaluation, timed."""
    import torch

    from model_card.evaluation import evaluate_model

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run = evaluate_model(embedder, [task], eval_dir, embedder.plan.batch_size, fresh=True)
    seconds = time.perf_counter() - started
    texts = 2 * task.size["pairs"]
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in embedder.model.parameters()})
    return {
        "encoding": embedder.plan.describe(),
        "weights": dtypes,
        "device": str(embedder.model.device),
        "score": round(run[task.name].main_score, 5),
        "seconds": round(seconds, 2),
        "texts_per_s": round(texts / seconds, 1),
        "peak_memory_mb": _peak_memory_mb(),
    }


def evaluation_phase(work: Path, tiny: bool) -> dict[str, Any]:
    """Evaluate the trained model and its base on one small local task; the figures."""
    try:
        import mteb
    except ImportError as exc:
        return {"skipped": f"mteb does not import here ({exc})"}
    from kit.config import EvaluationSection
    from kit.evalsets import LocalTask
    from model_card.encoders import build_base, load_trained
    from model_card.tasks import local_eval_task

    size = TINY if tiny else REAL
    work.mkdir(parents=True, exist_ok=True)
    decoder, release = _models(work / "models", size)
    local = LocalTask(name="STS17-en-en", type="sts", path=str(STS17), registry_task="STS17",
                      languages="eng-Latn", max_pairs=size["pairs"])  # fmt: skip
    settings = EvaluationSection(local_tasks=[local], compression=False)
    task = local_eval_task(local)
    trained = _run(load_trained(release, "gpu-check/trained", settings), task, work / "eval")
    base = _run(build_base(str(decoder), size["max_length"], settings), task, work / "eval")
    return {
        "mteb": mteb.__version__,
        "task": f"{task.name}: {task.size['pairs']} pairs, {size['max_length']} tokens at most",
        "trained": trained,
        "base": base,
        "scores_agree": abs(trained["score"] - base["score"]) <= AGREEMENT,
    }
