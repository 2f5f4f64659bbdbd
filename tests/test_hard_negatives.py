"""Mined hard negatives: a real build with a tiny trained embedder (a sentence-transformers
folder), read back as users and training do; its embeddings are kept across builds."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard

from dataset_builder.export import build
from kit.cli import run_stage
from kit.config import Config, config_notes, load_config
from kit.instructions import instruct
from kit.schema import MINED_TYPES, UNIFIED_CONFIG, features_for, mined_negative_columns
from kit.staleness import expected_provenance, why_stale
from tests.dataset_raw import synthesize, write_run
from tests.toml_writer import dump_toml

ROWS = 60
NEGATIVES = 3
MARGIN = 0.05
MAX_LENGTH = 64
MINED = mined_negative_columns(NEGATIVES)


def write_config(folder: Path, name: str = "mined", **mining: object) -> Path:
    path = folder / f"{name}.toml"
    sections = {
        "project": {"runs_dir": str(folder / "runs"), "build_dir": str(folder / "build")},
        "generation": {"run_name": "run"},
        "dataset": {"validation_fraction": 0.2, "hard_negatives": mining},
    }
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


def mining(embedder: Path, **overrides: object) -> dict:
    settings = {
        "enabled": True,
        "embedder": str(embedder),
        "num_negatives": NEGATIVES,
        "relative_margin": MARGIN,
        "max_length": MAX_LENGTH,
    }
    return settings | overrides


def cache_parts(config: Config) -> list[int]:
    """Keys in each part of the miner's embedding cache, oldest first."""
    parts = sorted(
        config.layout.mining_cache_dir.rglob("part-*.keys.npy"), key=lambda p: p.stat().st_mtime_ns
    )
    return [len(np.load(part)) for part in parts]


def mined_texts(out: Path) -> set[tuple[str, str]]:
    """(role, text) of every text the miner embeds for a built dataset."""
    found = set()
    for rows in rows_of(out).values():
        for row in rows:
            if row["task_type"] in MINED_TYPES:
                found.add(("query", instruct(row["task_definition"]) + row["query"]))
                found |= {("document", t) for t in (row["positive"], row["negative"]) if t}
    return found


@pytest.fixture(scope="module")
def built(tiny_st_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three builds sharing one embedding cache: the run, the same run again, and the run
    with rows added; and the run without mining."""
    import torch
    from sentence_transformers import util

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("mined")
    run_dir, grown_dir = folder / "runs" / "run", folder / "runs" / "grown"
    write_run(run_dir, synthesize(ROWS, seed=3), shards=2)
    write_run(grown_dir, synthesize(ROWS + 20, seed=3), shards=2)
    config = load_config(write_config(folder, **mining(tiny_st_model_dir)))
    plain = load_config(write_config(folder, "plain"))
    calls: list[list[int]] = []
    original = util.mine_hard_negatives

    def counted(*args: object, **kwargs: object) -> object:
        calls[-1].append(kwargs["dataset"].num_rows)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(util, "mine_hard_negatives", counted)
        calls.append([])
        result = build(config, run_dir, folder / "mined")
        parts_first = cache_parts(config)
        calls.append([])
        again = build(config, run_dir, folder / "again")
        parts_again = cache_parts(config)
        calls.append([])
        grown = build(config, grown_dir, folder / "grown")
    unmined = build(plain, run_dir, folder / "plain")
    torch.set_num_threads(threads)
    return {
        "config": config,
        "plain": plain,
        "run_dir": run_dir,
        "embedder": tiny_st_model_dir,
        "out": result.output_dir,
        "facts": result.facts,
        "again": again.output_dir,
        "grown": grown.output_dir,
        "unmined": unmined.output_dir,
        "calls": calls,
        "parts": [parts_first, parts_again, cache_parts(config)],
    }


def rows_of(out: Path) -> dict[str, list[dict]]:
    loaded = datasets.load_dataset(str(out), UNIFIED_CONFIG)
    return {split: loaded[split].to_list() for split in loaded}


def test_mined_columns_load_and_are_all_or_nothing(built: dict) -> None:
    loaded = datasets.load_dataset(str(built["out"]), UNIFIED_CONFIG)
    for split in loaded.values():
        assert split.features == features_for(UNIFIED_CONFIG, NEGATIVES)
        assert split.column_names[6:10] == ["negative", *MINED]
    mined = 0
    for row in (row for rows in rows_of(built["out"]).values() for row in rows):
        extra = [row[column] for column in MINED]
        if row["task_type"] not in MINED_TYPES:
            assert extra == [None] * NEGATIVES, row["id"]
            continue
        assert extra == [None] * NEGATIVES or None not in extra, row["id"]
        if None in extra:
            continue
        mined += 1
        assert row["positive"] not in extra and row["negative"] not in extra, row["id"]
        assert len(set(extra)) == NEGATIVES
    assert mined >= 10


def test_negatives_come_from_their_pool_and_respect_the_margin(built: dict) -> None:
    """The trained miner as users load it: queries with their instruction and no other
    prompt, documents with the model's document prompt."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(built["embedder"]), device="cpu")
    checked = 0
    for split, rows in rows_of(built["out"]).items():
        for task_type in MINED_TYPES:
            pool = [row for row in rows if row["task_type"] == task_type]
            texts = {row["positive"] for row in pool} | {row["negative"] for row in pool}
            for row in pool:
                if row[MINED[0]] is None:
                    continue
                extra = [row[column] for column in MINED]
                assert set(extra) <= texts, (split, row["id"])
                anchor = instruct(row["task_definition"]) + row["query"]
                query = model.encode_query([anchor], prompt="", normalize_embeddings=True)
                documents = model.encode_document(
                    [row["positive"], *extra], normalize_embeddings=True
                )
                positive, *negatives = (documents @ query.T).ravel().tolist()
                limit = positive - abs(positive) * MARGIN
                assert max(negatives) <= limit + 1e-4, (row["id"], positive, negatives)
                assert np.all(np.diff(negatives) <= 1e-4), "nearest first"
                checked += 1
    assert checked >= 10


def test_other_rows_and_configs_are_untouched(built: dict) -> None:
    strip = set(MINED)
    for split, rows in rows_of(built["out"]).items():
        plain = rows_of(built["unmined"])[split]
        assert [{k: v for k, v in row.items() if k not in strip} for row in rows] == plain
    for config in ("retrieval", "classification", "short_short", "long_long", "sts", "bitext"):
        for path in sorted((built["unmined"] / "data" / config).iterdir()):
            mined = built["out"] / "data" / config / path.name
            assert mined.read_bytes() == path.read_bytes(), (config, path.name)


def test_the_same_run_gives_the_same_bytes(built: dict) -> None:
    def snapshot(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    assert snapshot(built["again"]) == snapshot(built["out"])


def test_card_and_provenance_report_the_mining(built: dict) -> None:
    mined = sum(
        row[MINED[0]] is not None for rows in rows_of(built["out"]).values() for row in rows
    )
    eligible = sum(
        row["task_type"] in MINED_TYPES for rows in rows_of(built["out"]).values() for row in rows
    )
    card = DatasetCard.load(built["out"] / "README.md")
    infos = {info["config_name"]: info for info in card.data.to_dict()["dataset_info"]}
    names = [feature["name"] for feature in infos[UNIFIED_CONFIG]["features"]]
    assert names[6:10] == ["negative", *MINED]
    text = card.text
    section = text[text.index("## Mined hard negatives") : text.index("## Statistics")]
    assert "- Embedder: `local:model`, a trained embedder loaded as it is published" in section
    assert "above 95% of the positive's score (`relative_margin = 0.05`" in section
    assert f"exactly {NEGATIVES} of them in `negative_2`, `negative_3`, `negative_4`" in section
    total = next(line for line in section.splitlines() if line.startswith("| all |"))
    cells = [cell.strip() for cell in total.strip("|").split("|")]
    assert cells[:4] == ["all", str(eligible), str(mined), str(eligible - mined)]
    positive, negative = (float(cell.split(" / ")[0]) for cell in cells[4:6])
    assert negative < positive
    skipped, nearest = (int(n) for n in cells[6].split(" of "))
    assert 0 < skipped <= nearest
    facts = built["facts"].hard_negatives
    assert facts["rows_mined"] == mined
    assert facts["embedder"] == "local:model"
    assert facts["loaded_as"] == "a sentence-transformers model, loaded as it is published"
    assert "Not mined for this build" in (built["unmined"] / "README.md").read_text()


def test_training_reads_the_mined_columns_as_extra_negatives(built: dict) -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from training.data import load_training_data

    data = load_training_data(str(built["out"]), [], None)
    shape = data.train[f"with_{NEGATIVES + 1}_negatives"]
    negatives = [f"negative_{i}" for i in range(1, NEGATIVES + 2)]
    assert shape.column_names == ["anchor", "positive", *negatives]
    assert all(row["anchor"].startswith("Instruct: ") for row in shape)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(built["embedder"]), device="cpu")
    batch = shape.select(range(min(4, shape.num_rows)))
    features = [model.tokenize(batch[column]) for column in shape.column_names]
    loss = MultipleNegativesRankingLoss(model, scale=50.0)(features, None)
    assert np.isfinite(loss.item())


def test_one_search_per_pool(built: dict) -> None:
    """Each task type and split is mined by one call of the library, never two."""
    pools: dict[tuple[str, str], int] = {}
    for split, rows in rows_of(built["out"]).items():
        for row in rows:
            if row["task_type"] in MINED_TYPES:
                pools[(row["task_type"], split)] = pools.get((row["task_type"], split), 0) + 1
    first = built["calls"][0]
    assert first == [pools[key] for key in sorted(pools)]
    assert built["calls"][1] == first


def test_embeddings_are_cached_by_text_and_miner_across_builds(built: dict) -> None:
    """The first build embeds every text once; the same rows again embed nothing (and give
    the same bytes, see above); added rows embed only their new texts."""
    first, again, grown = built["parts"]
    texts = mined_texts(built["out"])
    assert first == [len(texts)]
    assert again == first
    added = mined_texts(built["grown"]) - texts
    assert grown == [len(texts), len(added)] and added


def test_mining_default_is_one_negative(tmp_path: Path, tiny_st_model_dir: Path) -> None:
    config = load_config(write_config(tmp_path, enabled=True, embedder=str(tiny_st_model_dir)))
    assert config.dataset.hard_negatives.num_negatives == 1
    assert config.dataset.hard_negatives.active


def test_an_untrained_model_is_refused_as_a_miner(
    tmp_path: Path, tiny_model_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain decoder folder (no modules.json) and the bundled base are not embedders."""
    decoder = tiny_model_dirs["gemma3"]
    for embedder, why in (
        (str(decoder), f"{decoder} is not a sentence-transformers model (no modules.json): "
                       "mining needs a trained embedder"),
        ("bundled:gemma-3-270m", "bundled:gemma-3-270m is an untrained base decoder, not a "
                                 "trained embedder"),
    ):  # fmt: skip
        path = write_config(tmp_path, enabled=True, embedder=embedder)
        argv = ["--config", str(path)]
        assert run_stage("dataset_builder", "dataset_builder.export:main", argv) == 2
        message = f"error: {path}: dataset.hard_negatives.embedder: {why}"
        assert capsys.readouterr().err.strip().splitlines() == [message]
        assert not (tmp_path / "build").exists()


def with_mining(config: Config, **change: object) -> Config:
    mining = dataclasses.replace(config.dataset.hard_negatives, **change)
    return dataclasses.replace(
        config, dataset=dataclasses.replace(config.dataset, hard_negatives=mining)
    )


def test_staleness_follows_the_settings_and_the_embedder(built: dict, tmp_path: Path) -> None:
    config = built["config"]
    base = expected_provenance("dataset_builder", config)
    for change in ({"relative_margin": 0.1}, {"num_negatives": 2}, {"max_length": 32}):
        changed = expected_provenance("dataset_builder", with_mining(config, **change))
        assert why_stale(base, changed) == "config changed: [dataset]", change
    copy = with_mining(config, embedder=str(shutil.copytree(built["embedder"], tmp_path / "m")))
    copied = expected_provenance("dataset_builder", copy)
    model_config = tmp_path / "m" / "config.json"
    model_config.write_text(model_config.read_text() + "\n")
    assert why_stale(copied, expected_provenance("dataset_builder", copy)) == "input changed: miner"


def test_mining_without_a_trained_embedder_is_off_and_says_why(
    built: dict, tmp_path: Path
) -> None:
    path = write_config(tmp_path, enabled=True)
    config = load_config(path)
    assert not config.dataset.hard_negatives.active
    assert config_notes(config) == [
        "dataset.hard_negatives: mining is off, since no trained embedder is named in "
        "dataset.hard_negatives.embedder (an untrained base model's nearest neighbours are "
        "noise, not hard negatives)"
    ]
    out = build(config, built["run_dir"], tmp_path / "out").output_dir
    assert MINED[0] not in rows_of(out)["train"][0]
    assert expected_provenance("dataset_builder", config).inputs["miner"] is None


def test_shipped_configs_mine_only_with_a_named_embedder() -> None:
    repo = Path(__file__).resolve().parent.parent
    for name in ("e5-mistral.toml", "default.toml"):
        config = load_config(repo / "configs" / name)
        assert not config.dataset.hard_negatives.active and config_notes(config) == [], name


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"num_negatives": 0},
            "dataset.hard_negatives.num_negatives: 0 is outside the allowed range 1 .. 64",
        ),
        (
            {"relative_margin": 1.0},
            "dataset.hard_negatives.relative_margin: 1.0 must be at least 0.0 and below 1.0",
        ),
        (
            {"relative_margin": -0.05},
            "dataset.hard_negatives.relative_margin: -0.05 must be at least 0.0 and below 1.0",
        ),
        (
            {"embedder": "./no/such/model"},
            "dataset.hard_negatives.embedder: model path does not exist: ./no/such/model",
        ),
        (
            {"margin": 0.05},
            "dataset.hard_negatives: unknown key margin (allowed: enabled, embedder, "
            "num_negatives, relative_margin, max_length, batch_size)",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: dict, message: str
) -> None:
    path = write_config(tmp_path, enabled=True, **settings)
    assert run_stage("dataset_builder", "dataset_builder.export:main", ["--config", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}: {message}"]
    assert not (tmp_path / "build").exists()
