"""The embedder's pieces against hand computations with plain transformers and torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kit.embedder import build_embedder
from kit.instructions import release_prompts
from tests.training_helpers import FAMILIES
from training.adapter import add_lora, lora_state_dict
from training.loss import BucketedCachedInfoNCELoss

MAX_LENGTH = 12
TEXTS = [
    "search river",
    "find mountain question about the ocean and the city",
    "the a query document answer question retrieve search find similar text sentence passage",
    "ocean",
]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def hand_embeddings(model_dir: Path, texts: list[str], max_length: int) -> torch.Tensor:
    """Last-layer hidden state at EOS, one unpadded text at a time, EOS placed by hand."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"][: max_length - 1] + [tokenizer.eos_token_id]
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        rows.append(torch.nn.functional.normalize(hidden, dim=0))
    return torch.stack(rows)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_embedding_is_the_hidden_state_at_eos(tiny_model_dirs, family, padding_side):
    model = build_embedder(str(tiny_model_dirs[family]), MAX_LENGTH, release_prompts())
    model.tokenizer.padding_side = padding_side
    features = model.preprocess(TEXTS)
    lengths = features["attention_mask"].sum(dim=1)
    assert int(lengths.max()) == MAX_LENGTH, "one text must be truncated"
    for row, length in zip(features["input_ids"], lengths, strict=True):
        last = row[-1] if padding_side == "left" else row[int(length) - 1]
        assert int(last) == model.tokenizer.eos_token_id
    got = model.encode(TEXTS, convert_to_tensor=True)
    want = hand_embeddings(tiny_model_dirs[family], TEXTS, MAX_LENGTH)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_bos_is_kept_where_the_base_adds_it(tiny_model_dirs, family):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(tiny_model_dirs[family])
    model = build_embedder(str(tiny_model_dirs[family]), MAX_LENGTH, release_prompts())
    ids = model.tokenizer("ocean")["input_ids"]
    assert ids == base("ocean")["input_ids"] + [base.eos_token_id]
    assert model.tokenizer.pad_token is not None


def test_reload_gives_identical_embeddings_and_prompts(tiny_model_dirs, tmp_path):
    from sentence_transformers import SentenceTransformer

    prompts = release_prompts()
    model = build_embedder(str(tiny_model_dirs["mistral"]), MAX_LENGTH, prompts)
    model.save(str(tmp_path / "m"))
    reloaded = SentenceTransformer(str(tmp_path / "m"))
    assert reloaded.prompts == prompts
    assert reloaded.prompts["SciFact-query"] == (
        "Instruct: Given a scientific claim, retrieve documents that support or refute the "
        "claim\nQuery: "
    )
    assert reloaded.prompts["document"] == ""
    assert reloaded.prompts["STS"].startswith("Instruct: ")
    assert "Retrieval" not in reloaded.prompts, "documents of retrieval tasks take no instruction"
    for name in (None, "query"):
        torch.testing.assert_close(
            reloaded.encode(TEXTS, prompt_name=name, convert_to_tensor=True),
            model.encode(TEXTS, prompt_name=name, convert_to_tensor=True),
            atol=0,
            rtol=0,
        )


def _randomize_lora(model) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def test_merged_lora_equals_adapter_model_and_differs_from_base(tiny_model_dirs, tmp_path):
    from sentence_transformers import SentenceTransformer

    from training.adapter import merged_embedder

    base_dir = str(tiny_model_dirs["gemma3"])
    prompts = release_prompts()
    base = build_embedder(base_dir, MAX_LENGTH, prompts)
    adapter_model = build_embedder(base_dir, MAX_LENGTH, prompts)
    add_lora(adapter_model, 16, 32, 0.0)
    _randomize_lora(adapter_model)
    adapter_model.eval()
    lora = {"r": 16, "alpha": 32, "dropout": 0.0}
    merged = merged_embedder(base_dir, MAX_LENGTH, prompts, lora, lora_state_dict(adapter_model))
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    with_adapter = adapter_model.encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(
        merged.encode(TEXTS, convert_to_tensor=True), with_adapter, atol=1e-5, rtol=0
    )
    merged.save(str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    reloaded = SentenceTransformer(str(tmp_path / "merged"))
    torch.testing.assert_close(
        reloaded.encode(TEXTS, convert_to_tensor=True), with_adapter, atol=1e-5, rtol=0
    )
    base_emb = base.encode(TEXTS, convert_to_tensor=True)
    assert (reloaded.encode(TEXTS, convert_to_tensor=True) - base_emb).abs().max() > 1e-2


def _columns(model, anchors, positives, negatives):
    return [model.preprocess(anchors), model.preprocess(positives), model.preprocess(negatives)]


ANCHORS = ["search river", "find mountain question about the ocean", "the city", "ocean a"]
POSITIVES = ["river passage", "mountain", "the city of the river and the mountain", "ocean"]
NEGATIVES = ["sport weather", "music", "history topic science label", "text"]


def test_loss_is_infonce_at_temperature_002(tiny_model_dirs):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
    )

    model = build_embedder(str(tiny_model_dirs["qwen2"]), MAX_LENGTH, release_prompts()).eval()
    anchors = model.encode(ANCHORS, convert_to_tensor=True)
    docs = model.encode(POSITIVES + NEGATIVES, convert_to_tensor=True)
    logits = (anchors @ docs.T) / 0.02
    by_hand = -(logits.diagonal() - torch.logsumexp(logits, dim=1)).mean()
    for loss in (
        BucketedCachedInfoNCELoss(model, scale=50.0, mini_batch_size=2, length_bucketing=True),
        BucketedCachedInfoNCELoss(model, scale=50.0, mini_batch_size=2, length_bucketing=False),
        CachedMultipleNegativesRankingLoss(model, scale=50.0, mini_batch_size=2),
    ):
        value = loss(_columns(model, ANCHORS, POSITIVES, NEGATIVES), None)
        torch.testing.assert_close(value.detach(), by_hand, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("bucketing", "mini_batch"), [(True, 2), (False, 2), (True, 8)])
def test_cached_bucketed_gradients_equal_the_uncached_loss(tiny_model_dirs, bucketing, mini_batch):
    """With mini_batch 8 one mini-batch holds the whole batch and the decoder runs once per
    column, as in the uncached loss; with 2 it runs twice per mini-batch (cache, replay)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = build_embedder(str(tiny_model_dirs["gemma3"]), MAX_LENGTH, release_prompts())
    add_lora(model, 4, 8, 0.0)
    _randomize_lora(model)

    def gradients(loss) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss(_columns(model, ANCHORS, POSITIVES, NEGATIVES), None).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    want = gradients(MultipleNegativesRankingLoss(model, scale=50.0))
    calls: list[int] = []
    embeddings = model[0].auto_model.get_input_embeddings()
    hook = embeddings.register_forward_hook(lambda *_: calls.append(1))
    got = gradients(
        BucketedCachedInfoNCELoss(
            model, scale=50.0, mini_batch_size=mini_batch, length_bucketing=bucketing
        )
    )
    hook.remove()
    assert len(calls) == (3 if mini_batch >= len(ANCHORS) else 3 * 2 * 2)
    assert got.keys() == want.keys() and len(want) > 0
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4)


def test_bucketing_sorts_mini_batches_by_length(tiny_model_dirs):
    from training.loss import _sort_by_length

    model = build_embedder(str(tiny_model_dirs["gemma3"]), MAX_LENGTH, release_prompts())
    feature = model.preprocess(ANCHORS)
    sorted_feature, inverse = _sort_by_length(feature)
    lengths = sorted_feature["attention_mask"].sum(dim=1)
    assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
    torch.testing.assert_close(sorted_feature["input_ids"][inverse], feature["input_ids"])


def _positions_per_step(lengths: list[int], mini_batch: int, bucketed: bool) -> int:
    """Token positions a GradCache step runs for one column: each mini-batch is trimmed to its
    longest row, and runs twice (the cached pass and the replay)."""
    order = sorted(lengths, reverse=True) if bucketed else lengths
    chunks = [order[i : i + mini_batch] for i in range(0, len(order), mini_batch)]
    return 2 * sum(len(chunk) * max(chunk) for chunk in chunks)


@pytest.mark.parametrize("bucketing", [True, False])
def test_bucketing_cuts_the_padded_positions_the_decoder_runs(tiny_model_dirs, bucketing):
    """The Gemma fixture pads on the left like the real Gemma. The embedder must pad on the
    right, or GradCache cannot trim a mini-batch and bucketing saves nothing."""
    from transformers import AutoTokenizer

    base = tiny_model_dirs["gemma3"]
    assert AutoTokenizer.from_pretrained(base).padding_side == "left"
    model = build_embedder(str(base), 64, release_prompts())
    assert model.tokenizer.padding_side == "right"
    short, long = "ocean", " ".join(["the river passage of the mountain city"] * 3)
    anchors = [f"{short} {i}" if i % 2 else f"{long} {i}" for i in range(8)]
    documents = [f"{long} doc {i}" if i % 2 else f"{short} doc {i}" for i in range(8)]
    columns = [model.preprocess(anchors), model.preprocess(documents)]
    lengths = [column["attention_mask"].sum(dim=1).tolist() for column in columns]
    positions: list[int] = []
    embeddings = model[0].auto_model.get_input_embeddings()
    hook = embeddings.register_forward_hook(lambda _m, args, _o: positions.append(args[0].numel()))
    loss = BucketedCachedInfoNCELoss(
        model, scale=50.0, mini_batch_size=2, length_bucketing=bucketing
    )
    loss(columns, None).backward()
    hook.remove()
    want = sum(_positions_per_step(column, 2, bucketing) for column in lengths)
    assert sum(positions) == want
    unbucketed = sum(_positions_per_step(column, 2, False) for column in lengths)
    if bucketing:
        assert want < 0.75 * unbucketed


def test_zero3_config_keeps_lora_tensors_whole(tmp_path):
    import json

    from training.distributed import deepspeed_config

    source = Path(__file__).resolve().parent.parent / "configs" / "deepspeed" / "zero3.json"
    config = deepspeed_config(str(source), lora_param_numel=229_376)
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_param_persistence_threshold"] == 229_376
    # Nothing gathers the 16-bit model at a save: the release is rebuilt from base + adapter.
    assert "stage3_gather_16bit_weights_on_model_save" not in zero
    zero2 = Path(__file__).resolve().parent.parent / "configs" / "deepspeed" / "zero2.json"
    assert deepspeed_config(str(zero2), 229_376) == json.loads(zero2.read_text())


def test_launcher_commands_rerun_this_stage():
    from training.distributed import Nodes, launch_command

    one = Nodes(count=1, rank=0, endpoint="")
    stage = ["--config", "configs/e5-mistral.toml", "--force"]
    torchrun = launch_command("torchrun", 8, stage, one, 29611)
    assert torchrun[1:] == [
        "-m", "torch.distributed.run", "--nnodes=1", "--node_rank=0", "--nproc_per_node=8",
        "--master_port=29611", "-m", "training", *stage,
    ]  # fmt: skip
    second = Nodes(count=2, rank=1, endpoint="node0.cluster:29500")
    assert launch_command("torchrun", 8, stage, second, 29611)[3:7] == [
        "--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--rdzv-endpoint=node0.cluster:29500",
    ]  # fmt: skip
    accelerate = launch_command("accelerate", 4, ["--config", "c.toml"], one, 29612)
    assert accelerate[1:] == [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
        "--num_machines", "1", "--machine_rank", "0", "--main_process_port", "29612",
        "-m", "training", "--config", "c.toml",
    ]  # fmt: skip
    assert launch_command("accelerate", 8, ["--config", "c.toml"], second, 0)[4:14] == [
        "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
        "--main_process_ip", "node0.cluster", "--main_process_port", "29500",
    ]  # fmt: skip


def test_nodes_come_from_the_config_or_torchruns_environment(monkeypatch):
    from kit.cli import StageError
    from kit.config import TrainingSection
    from training.distributed import Nodes, nodes

    for name in ("PET_NNODES", "PET_NODE_RANK", "PET_RDZV_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    cfg = TrainingSection(nnodes=2, node_rank=0, rdzv_endpoint="10.0.0.1:29500")
    assert nodes(cfg) == Nodes(2, 0, "10.0.0.1:29500")
    monkeypatch.setenv("PET_NODE_RANK", "1")
    assert nodes(cfg) == Nodes(2, 1, "10.0.0.1:29500")
    monkeypatch.setenv("PET_NODE_RANK", "2")
    with pytest.raises(StageError, match="training.node_rank = 2 is not below nnodes = 2"):
        nodes(cfg)
    with pytest.raises(StageError, match="training.nnodes = 2 needs training.rdzv_endpoint"):
        nodes(TrainingSection(nnodes=2))


def test_the_private_gradcache_helper_is_read_from_the_installed_version() -> None:
    """training/loss.py imports ``_minibatch_ranges``, private to sentence-transformers: a
    version change must be read again before the pin in pyproject.toml moves."""
    import sentence_transformers

    from training.loss import PRIVATE_API_READ_FROM

    assert sentence_transformers.__version__ == PRIVATE_API_READ_FROM, (
        f"sentence-transformers {sentence_transformers.__version__} is installed but "
        f"training/loss.py was written against {PRIVATE_API_READ_FROM}: re-read "
        "sentence_transformers/base/losses/gradcache.py, then update both"
    )
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert f'"sentence-transformers=={PRIVATE_API_READ_FROM}"' in pyproject


def test_the_loss_keeps_no_state_between_calls(tiny_model_dirs) -> None:
    model = build_embedder(str(tiny_model_dirs["qwen2"]), MAX_LENGTH, release_prompts())
    loss = BucketedCachedInfoNCELoss(model, scale=50.0, mini_batch_size=2, length_bucketing=True)
    before = dict(vars(loss))
    loss(_columns(model, ANCHORS, POSITIVES, NEGATIVES), None).backward()
    assert vars(loss).keys() == before.keys()
    assert all(vars(loss)[key] is before[key] for key in before)


MATRYOSHKA_DIMS = (32, 16, 8)


def _infonce_by_hand(anchors: torch.Tensor, docs: torch.Tensor, dim: int) -> torch.Tensor:
    anchors = torch.nn.functional.normalize(anchors[:, :dim], dim=1)
    docs = torch.nn.functional.normalize(docs[:, :dim], dim=1)
    logits = (anchors @ docs.T) / 0.02
    return -(logits.diagonal() - torch.logsumexp(logits, dim=1)).mean()


@pytest.mark.parametrize(("bucketing", "mini_batch"), [(True, 2), (False, 2), (True, 8)])
def test_matryoshka_around_the_kit_loss_equals_it_around_the_stock_loss(
    tiny_model_dirs, bucketing, mini_batch
):
    """MatryoshkaLoss decorates a GradCache loss's ``calculate_loss``: the kit's loss, with
    bucketing and with the one-forward path (mini_batch 8 holds the batch), must give the
    stock GradCache loss's value and gradients under it, and the uncached loss's too."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from training.loss import with_matryoshka

    model = build_embedder(str(tiny_model_dirs["gemma3"]), MAX_LENGTH, release_prompts())
    add_lora(model, 4, 8, 0.0)
    _randomize_lora(model)

    def run(loss) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        value = with_matryoshka(model, loss, MATRYOSHKA_DIMS)(
            _columns(model, ANCHORS, POSITIVES, NEGATIVES), None
        )
        value.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return value.detach(), grads

    with torch.no_grad():
        anchors = model.encode(ANCHORS, convert_to_tensor=True)
        docs = model.encode(POSITIVES + NEGATIVES, convert_to_tensor=True)
    by_hand = sum(_infonce_by_hand(anchors, docs, dim) for dim in MATRYOSHKA_DIMS)
    kit_value, kit_grads = run(
        BucketedCachedInfoNCELoss(
            model, scale=50.0, mini_batch_size=mini_batch, length_bucketing=bucketing
        )
    )
    torch.testing.assert_close(kit_value, by_hand, atol=1e-4, rtol=1e-5)
    plain = _infonce_by_hand(anchors, docs, 32)
    assert abs(float(kit_value) - float(plain)) > 0.1, "the narrower widths must add their loss"
    for reference in (
        CachedMultipleNegativesRankingLoss(model, scale=50.0, mini_batch_size=mini_batch),
        MultipleNegativesRankingLoss(model, scale=50.0),
    ):
        value, grads = run(reference)
        torch.testing.assert_close(kit_value, value, atol=1e-4, rtol=1e-5)
        assert kit_grads.keys() == grads.keys() and len(grads) > 0
        for name in grads:
            torch.testing.assert_close(kit_grads[name], grads[name], atol=1e-4, rtol=1e-4)


def test_matryoshka_widths_always_include_the_full_one_and_fit_the_model(tiny_model_dirs):
    from transformers import AutoConfig

    from kit.cli import StageError
    from training.arguments import trained_dims

    width = AutoConfig.from_pretrained(tiny_model_dirs["qwen2"]).hidden_size
    assert width == 32
    assert trained_dims([], width) == ()
    assert trained_dims([8, 16], width) == (32, 16, 8)
    assert trained_dims([32, 8], width) == (32, 8)
    with pytest.raises(StageError) as caught:
        trained_dims([8, 64], width)
    assert str(caught.value) == (
        "training.matryoshka_dims: 64 is wider than the base model's embedding dimension 32"
    )
