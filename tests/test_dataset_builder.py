"""dataset_builder: a seeds run becomes a Hub dataset folder that `load_dataset` reads."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import re
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from dataset_builder.export import build
from kit.cli import run_stage
from kit.config import load_config
from kit.schema import CONFIG_NAMES, RAW_SCHEMA_VERSION, TASK_TABLE, features_for
from tests.dataset_raw import make_record, synthesize, write_run
from tests.toml_writer import dump_toml

STAGE = "dataset_builder.export:main"

ROWS = 170


def write_config(folder: Path, run_name: str = "run", **dataset: object) -> Path:
    path = folder / f"{run_name}.toml"
    sections = {
        "project": {
            "runs_dir": str(folder / "runs"),
            "build_dir": str(folder / f"build-{run_name}"),
        },
        "hub": {"namespace": "tester", "dataset_repo": "synthetic-data"},
        "generation": {"run_name": run_name},
        "dataset": {"validation_fraction": 0.2, **dataset},
    }
    path.write_text(dump_toml(sections), encoding="utf-8")
    return path


def raw_records(run_dir: Path) -> list[dict]:
    """Every raw record in the order the dataset must keep: shard name, then line."""
    return [
        json.loads(line)
        for shard in sorted((run_dir / "raw").glob("shard-*.jsonl"))
        for line in shard.read_text(encoding="utf-8").splitlines()
    ]


def unified(record: dict) -> dict:
    task = TASK_TABLE[record["task_type"]]
    query, positive, negative = (task.field_for(role) for role in ("query", "positive", "negative"))
    example = record["example"]
    return {
        "id": record["id"],
        "task_type": record["task_type"],
        "task_definition": record["task_definition"],
        "language": record["language"],
        "query": example[query],
        "positive": example[positive],
        "negative": example[negative] if negative else None,
        "target_language": record["target_language"] if record["task_type"] == "bitext" else None,
        "generator_model": record["generator_model"],
        "template_id": record["template_id"],
        "template_sha256": record["template_sha256"],
        "document_id": record.get("document_id"),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("dataset")
    config = load_config(write_config(folder))
    run_dir = folder / "runs" / "run"
    write_run(run_dir, synthesize(ROWS, seed=3), shards=3)
    result = build(config, run_dir, folder / "build-run" / "dataset")
    return {"config": config, "run_dir": run_dir, "out": result.output_dir, "result": result}


def test_every_config_loads_with_both_splits_and_streams(built: dict) -> None:
    out = str(built["out"])
    assert sorted(datasets.get_dataset_config_names(out)) == sorted(CONFIG_NAMES)
    for name in CONFIG_NAMES:
        loaded = datasets.load_dataset(out, name)
        assert set(loaded) == {"train", "validation"}
        assert loaded["train"].num_rows > 0 and loaded["validation"].num_rows > 0, name
        assert loaded["train"].features == features_for(name)
        streamed = datasets.load_dataset(out, name, split="validation", streaming=True)
        assert list(streamed) == loaded["validation"].to_list()


def test_default_config_rows_equal_the_accepted_raw_records(built: dict) -> None:
    expected = [unified(record) for record in raw_records(built["run_dir"])]
    loaded = datasets.load_dataset(str(built["out"]))
    rows = loaded["train"].to_list() + loaded["validation"].to_list()
    assert sorted(rows, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    order = {row["id"]: i for i, row in enumerate(expected)}
    for split in ("train", "validation"):
        positions = [order[row["id"]] for row in loaded[split]]
        assert positions == sorted(positions), f"{split} is not in raw order"
    assert {r["negative"] for r in rows if r["task_type"] in ("short_short", "long_long")} == {None}


def test_type_configs_hold_the_native_fields(built: dict) -> None:
    records = raw_records(built["run_dir"])
    for name, (task_type, native) in zip(
        CONFIG_NAMES, [(t.name, t.field_names) for t in TASK_TABLE.values()], strict=False
    ):
        loaded = datasets.load_dataset(str(built["out"]), name)
        rows = {r["id"]: r for split in loaded.values() for r in split}
        of_type = [r for r in records if r["task_type"] == task_type]
        assert len(rows) == len(of_type), name
        for record in of_type:
            row = rows[record["id"]]
            assert {k: row[k] for k in native} == {k: record["example"][k] for k in native}
            assert row["task_definition"] == record["task_definition"]
            assert row["language"] == record["language"]
            if task_type == "bitext":
                assert row["target_language"] == record["target_language"]


def test_validation_holds_unseen_task_definitions(built: dict) -> None:
    loaded = datasets.load_dataset(str(built["out"]))
    asymmetric = ("short_long", "long_short", "short_short", "long_long")
    seen = {r["task_definition"] for r in loaded["train"] if r["task_type"] in asymmetric}
    held_out = {r["task_definition"] for r in loaded["validation"] if r["task_type"] in asymmetric}
    assert held_out and not held_out & seen
    share = loaded["validation"].num_rows / (
        loaded["validation"].num_rows + loaded["train"].num_rows
    )
    assert 0.1 < share < 0.3


def test_card_parses_and_says_what_users_need(built: dict) -> None:
    card = DatasetCard.load(built["out"] / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert {"en", "de", "fr", "ja"} <= set(data["language"])
    assert "sw" not in data["language"]  # claimed, never verified: named, not listed
    assert "never confirmed by the language identifier, so left out of the metadata: `sw`" in (
        card.text
    )
    assert data["size_categories"] == ["n<1K"]
    assert "sentence-similarity" in data["task_categories"] and "synthetic" in data["tags"]
    assert [c["config_name"] for c in data["configs"]] == sorted(CONFIG_NAMES)
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    assert sum(s["num_examples"] for s in infos["default"]["splits"]) == ROWS
    text = card.text
    assert "SmolLM2-135M-Instruct" in text and "small generator bundled with the kit" in text
    assert "arXiv:2401.00368" in text and "0 dropped" not in text
    assert f"rows published: {ROWS}; dropped: 0" in text
    assert f"There are {ROWS} rows of 6\ntask type(s) in" in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (built["out"] / image).read_bytes().startswith(b"\x89PNG")
    assert len(re.findall(r"!\[", text)) == 3


def test_usage_snippet_in_the_card_runs(built: dict) -> None:
    text = (built["out"] / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", text, re.S).group(1)
    assert built["config"].hub.repo_id("dataset") in snippet
    local = snippet.replace(built["config"].hub.repo_id("dataset"), str(built["out"]))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(local, "card-usage", "exec"), {})
    assert "Instruct: " in printed.getvalue() and "user_query" in printed.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_same_run_gives_the_same_bytes_and_unchanged_rebuild_writes_nothing(
    built: dict, tmp_path: Path
) -> None:
    second = build(built["config"], built["run_dir"], tmp_path / "dataset")
    assert snapshot(second.output_dir) == snapshot(built["out"])
    again = build(built["config"], built["run_dir"], second.output_dir)
    assert again.written == [] and again.removed == []


def test_the_same_rows_in_other_shards_give_the_same_data_and_sizes(tmp_path: Path) -> None:
    """A resumed run cuts the same rows into more shards: the Parquet files and the byte
    counts in the card's metadata are the same; only the run's own facts differ."""
    config = load_config(write_config(tmp_path))
    records = list(synthesize(60, seed=9))
    # write_run deals records round-robin: this order puts 20 consecutive ones in each shard.
    cut = [records[(position % 3) * 20 + position // 3] for position in range(60)]
    outputs = []
    for shards, order in ((1, records), (3, cut)):
        run_dir = tmp_path / f"run-{shards}" / "runs" / "run"
        write_run(run_dir, order, shards=shards)
        outputs.append(build(config, run_dir, tmp_path / f"out-{shards}").output_dir)
    one, three = (snapshot(out) for out in outputs)
    assert {k: v for k, v in one.items() if k.startswith("data/")} == {
        k: v for k, v in three.items() if k.startswith("data/")
    }
    sizes = [
        re.findall(r"(num_bytes|dataset_size): (\d+)", one_or_three["README.md"].decode())
        for one_or_three in (one, three)
    ]
    assert sizes[0] == sizes[1] and sizes[0]


def test_changed_run_rebuilds_and_drops_stale_shards(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, max_shard_rows=40))
    run_dir = tmp_path / "runs" / "run"
    write_run(run_dir, synthesize(120, seed=5), shards=2)
    first = build(config, run_dir, tmp_path / "out")
    assert any(name.endswith("-of-00003.parquet") for name in first.written)
    write_run(run_dir, synthesize(30, seed=5), shards=2)
    second = build(config, run_dir, tmp_path / "out")
    assert second.removed
    on_disk = sorted(p.name for p in (tmp_path / "out" / "data" / "default").iterdir())
    assert on_disk == ["train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert datasets.load_dataset(str(tmp_path / "out"), split="train").num_rows < 30


def bad_run_lines(rng: random.Random) -> tuple[list, dict[str, int], list[dict]]:
    """Good records mixed with every kind of bad line; returns lines, expected drops, good ones."""
    good = [
        make_record(i, t, rng)
        for i, t in enumerate(["short_long", "sts", "bitext", "long_short"] * 3)
    ]
    missing_query = make_record(100, "short_long", rng)
    del missing_query["example"]["user_query"]
    missing_language = make_record(101, "sts", rng)
    del missing_language["language"]
    unknown = make_record(102, "sts", rng) | {"task_type": "poetry"}
    future = make_record(103, "sts", rng) | {"schema_version": RAW_SCHEMA_VERSION + 1}
    empty = make_record(104, "long_short", rng)
    empty["example"]["label"] = "  "
    same_language = make_record(105, "bitext", rng) | {"target_language": "en", "language": "en"}
    lines = [
        *good[:6],
        missing_query,
        missing_language,
        unknown,
        future,
        empty,
        same_language,
        good[0],
    ]
    lines += good[6:]
    expected = {
        "missing field example.user_query": 1,
        "missing field language": 1,
        'unknown task type "poetry"': 1,
        f"unsupported schema_version {RAW_SCHEMA_VERSION + 1}": 1,
        "field example.label is empty": 1,
        "bitext with the same source and target language": 1,
        "duplicate id": 1,
    }
    return lines, expected, good


@pytest.mark.parametrize("torn", [False, True], ids=["arrow-path", "line-by-line-path"])
def test_bad_lines_are_counted_reported_and_nothing_good_is_lost(
    tmp_path: Path, torn: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lines, expected, good = bad_run_lines(random.Random(7))
    extra = {}
    if torn:
        lines += [
            "[1, 2]",
            f'{{"schema_version": {RAW_SCHEMA_VERSION}, "id": 5}}',
            f'{{"schema_version": "{RAW_SCHEMA_VERSION}"}}',
            '{"id": "x", "example": "text"}',
        ]
        extra = {
            0: [f'{{"schema_version": {RAW_SCHEMA_VERSION}, "id": "torn-', "\n"],
            1: [f'{{"schema_version": {RAW_SCHEMA_VERSION}, "task_ty'],
        }
        expected |= {
            "not a JSON object": 1,
            "field id is not a string": 1,
            f'unsupported schema_version "{RAW_SCHEMA_VERSION}"': 1,
            "example is not an object": 1,
            "torn or malformed JSON line": 2,
        }
    config_path = write_config(tmp_path)
    write_run(tmp_path / "runs" / "run", lines, shards=2, extra_lines=extra)
    with caplog.at_level(logging.INFO):
        assert (
            run_stage("dataset_builder", STAGE, ["--config", str(config_path)]) == 0
        )
    out = tmp_path / "build-run" / "dataset"
    card = (out / "README.md").read_text(encoding="utf-8")
    for reason, count in expected.items():
        assert f"{count} dropped: {reason}" in card
        assert f"{count} dropped: {reason}" in caplog.text
    assert f"dropped: {sum(expected.values())}." in card
    loaded = datasets.load_dataset(str(out))
    ids = sorted(r["id"] for split in loaded.values() for r in split)
    assert ids == sorted(record["id"] for record in good)


def test_missing_run_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config_path = write_config(tmp_path, run_name="absent")
    assert run_stage("dataset_builder", STAGE, ["--config", str(config_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no seeds run at") and "\n" not in err


def test_a_run_of_another_raw_schema_stops_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path)
    run = tmp_path / "runs" / "run"
    write_run(run, [make_record(i, "sts", random.Random(1)) for i in range(4)], bundled=False)
    (run / "provenance.json").write_text(
        json.dumps({"format_version": 1, "stage": "seeds", "facts": {"schema_version": 1}})
    )
    assert run_stage("dataset_builder", STAGE, ["--config", str(config_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run / 'provenance.json'}: the run was written with raw schema 1, this kit "
        f"reads schema {RAW_SCHEMA_VERSION}; regenerate it with this kit's seeds"
    )
    assert not (tmp_path / "build-run").exists()


def test_a_task_type_without_rows_is_left_out_and_said_so(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    rng = random.Random(1)
    records = [make_record(i, "sts", rng) for i in range(10)]
    write_run(tmp_path / "runs" / "run", records, bundled=False)
    out = build(config, tmp_path / "runs" / "run", tmp_path / "out").output_dir
    assert sorted(datasets.get_dataset_config_names(str(out))) == ["default", "sts"]
    assert datasets.load_dataset(str(out), "sts", split="validation").num_rows == 2
    assert datasets.load_dataset(str(out), split="train").num_rows == 8
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "No rows in this run, so not loadable: `retrieval`, `classification`" in card
    assert "There are 10 rows of 1\ntask type(s) in 5 verified language(s)." in card
    assert "small generator bundled" not in card


@pytest.mark.parametrize("near_duplicates", [True, False, None], ids=["on", "off", "unrecorded"])
def test_the_card_names_every_gate_with_its_count_and_what_was_deduplicated(
    tmp_path: Path, near_duplicates: bool | None
) -> None:
    """Each gate of the generation run has a row, those that rejected nothing included; the
    card says near-duplicates remain only when the run's MinHash gate was off."""
    config = load_config(write_config(tmp_path))
    run_dir = tmp_path / "runs" / "run"
    switches = {"content_rules": True, "language_check": False, "judge": False,
                "consistency_check": True}  # fmt: skip
    if near_duplicates is not None:
        switches["near_duplicates"] = near_duplicates
    summary = write_run(run_dir, synthesize(20, seed=2), gates=switches)
    summary["rejected"] = {"invalid_json": 4, "too_short:S1": 2, "query_in_positive": 1,
                           "near_duplicate": 3, "duplicate": 5}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    card = (build(config, run_dir, tmp_path / "out").output_dir / "README.md").read_text("utf-8")
    recorded = {None: "not recorded", True: "yes", False: "no"}[near_duplicates]
    rows = [
        "| content rules | `content_rules` | yes | 3 | `query_in_positive`: 1, `too_short:S1`: 2 |",
        "| language ID | `language_check` | no | 0 | – |",
        f"| near-duplicates (MinHash) | `near_duplicates` | {recorded} | 3 | `near_duplicate`: 3 |",
        "| corpus consistency (document in the top k) | `consistency_check` | yes | 0 | – |",
        "| LLM judge | `judge` | no | 0 | – |",
    ]
    assert "\n".join(rows) + "\n" in card
    sentences = {
        True: "- Duplicates were removed at generation by exact match, and near-duplicates by "
        "MinHash (the `near_duplicates` gate); paraphrases that share few words remain.",
        False: "- Duplicates were removed by exact match only; near-duplicates remain.",
        None: "- Duplicates were removed by exact match; the generation run does not record "
        "whether its near-duplicate gate was on.",
    }
    assert [sentence in card for sentence in sentences.values()] == [
        key == near_duplicates for key in sentences
    ]


def test_a_truncated_shard_is_detected_and_rebuilt(built: dict, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    build(built["config"], built["run_dir"], out)
    shard = sorted(out.glob("data/default/train-*.parquet"))[0]
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 3])  # a copy cut short by a kill or a full disk
    again = build(built["config"], built["run_dir"], out)
    assert again.written == [shard.relative_to(out).as_posix()]
    assert shard.read_bytes() == good


def test_a_full_disk_stops_with_one_line_and_keeps_the_previous_dataset(tmp_path: Path) -> None:
    """A file-size limit stands for a full disk: writes fail with EFBIG past 64 KiB."""
    import os
    import resource
    import subprocess
    import sys

    config = write_config(tmp_path)
    run_dir = tmp_path / "runs" / "run"
    write_run(run_dir, synthesize(40, seed=8), shards=1)
    assert run_stage("dataset_builder", STAGE, ["--config", str(config)]) == 0
    out = tmp_path / "build-run" / "dataset"
    before = snapshot(out)
    write_run(run_dir, synthesize(400, seed=9, scale=4), shards=1)  # a bigger run to publish

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    command = [sys.executable, "-m", "dataset_builder", "--config", str(config)]
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    full = subprocess.run(command, cwd=repo, env=env, preexec_fn=limited, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert full.returncode == 2, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write ") and "File too large" in last, last
    assert last.endswith("run the same command again: finished files were kept")
    assert snapshot(out) == before
    assert not list(out.parent.glob(".dataset-build-*"))
    assert (
        subprocess.run(command, cwd=repo, env=env, capture_output=True, check=False).returncode == 0
    )
    assert snapshot(out) != before and len(datasets.load_dataset(str(out))["train"]) > 40
