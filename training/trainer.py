"""The stock trainer, resuming a LoRA run from its own checkpoints and noting batch shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformerTrainer


class EmbedderTrainer(SentenceTransformerTrainer):
    """Checkpoints hold only the adapter (PEFT saves that); resume loads it back in place.

    The stock resume rebuilds a whole model from the checkpoint folder, which for an
    adapter-only folder means a second base model load and mismatched parameter names.
    DeepSpeed runs resume through DeepSpeed's own checkpoint instead and never get here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_shapes: list[tuple[int, int]] = []  # (rows, text columns) of each step

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        ids = [value for key, value in inputs.items() if key.endswith("input_ids")]
        if ids and model.training:
            self.batch_shapes.append((len(ids[0]), len(ids)))
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: object = None) -> None:
        from peft import load_peft_weights, set_peft_model_state_dict

        state = load_peft_weights(resume_from_checkpoint, device="cpu")
        set_peft_model_state_dict(self.model[0].model, state)

    def restore_final(self, checkpoint: str) -> int:
        """Load a final checkpoint's adapter and trainer state without training (resuming
        from it would take one step past ``max_steps``); return its step."""
        from transformers import TrainerState

        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        return self.state.global_step
