"""Kill it anywhere: ``make release`` SIGKILLed at moments spread over every stage, re-run
until it exits 0, ends where one uninterrupted run of the same configuration ends.

Both runs use a clone of the repository, a tiny decoder, a fake OpenAI-compatible endpoint
whose answers depend on the request alone, and a loopback Hub. The kills land on conditions
seen from outside (a shard with lines in it, a checkpoint folder appearing, the model file
being written, a Hub upload under way), polled every few milliseconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clone import REPO, copy_repository
from tests.fake_hub import FakeHub
from tests.model_card_fixtures import write_beir, write_sts
from tests.seeds_fake_server import FakeLLM, ServerThread
from tests.toml_writer import dump_toml

pytestmark = pytest.mark.slow
KEY_ENV = "CHAOS_LLM_KEY"
RUN_LIMIT_S = 600
PUBLISHED = ("dataset", "model", "space")
REPO_SUFFIX = {"dataset": "data", "model": "model", "space": "demo"}


@dataclass
class Pipeline:
    clone: Path
    hub: FakeHub
    llm: FakeLLM
    env: dict[str, str]

    def make(self, until: Callable[[], bool] | None = None) -> int | None:
        """Run ``make release``; SIGKILL its process group once ``until`` holds (None then)."""
        process = subprocess.Popen(
            ["make", "release"], cwd=self.clone, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + RUN_LIMIT_S
        while process.poll() is None and time.monotonic() < deadline:
            if until is not None and until():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return None
            time.sleep(0.005)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("make release did not finish in time")
        assert process.returncode == 0, process.stderr.read().decode()[-3000:]
        return process.returncode


def _config(clone: Path, base: Path, llm_url: str, data: Path) -> None:
    sections = {
        "project": {"runs_dir": "runs", "build_dir": "build"},
        "hub": {"namespace": "tester", "dataset_repo": "chaos-data", "model_repo": "chaos-model",
                "space_repo": "chaos-demo", "commit_retries": 1},
        "generator": {"backend": "openai", "base_url": llm_url, "model": "fake",
                      "api_key_env": KEY_ENV, "concurrency": 1, "max_retries": 2,
                      "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0},
        "generation": {"run_name": "chaos", "seed": 5, "tasks_per_brainstorm": 4,
                       "examples_per_task": 2.0,
                       "targets": {"short_long": 6, "long_short": 4, "short_short": 3,
                                   "long_long": 3, "sts": 4, "bitext": 4}},
        "quality": {"language_check": False},
        "dataset": {"validation_fraction": 0.25},
        "training": {"base_model": str(base), "max_length": 48, "batch_size": 8,
                     "mini_batch_size": 4, "learning_rate": 3e-3, "warmup_steps": 0,
                     "max_steps": 8, "save_steps": 2, "lora_dropout": 0.0, "precision": "fp32",
                     "gradient_checkpointing": False, "validation_pairs": 16, "gguf": []},
        "evaluation": {"batch_size": 16, "base_model": str(base), "model_license": "apache-2.0",
                       "local_tasks": [
                           {"name": "TinyRetrieval", "type": "retrieval",
                            "path": str(data / "beir"), "languages": "eng-Latn"},
                           {"name": "TinySTS", "type": "sts", "path": str(data / "sts.tsv"),
                            "languages": "eng-Latn"},
                       ]},
        "space": {"title": "chaos demo", "sample_documents": 5},
    }  # fmt: skip
    (clone / "configs" / "default.toml").write_text(dump_toml(sections), encoding="utf-8")


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict):
    """Two clones with their own endpoint and Hub: ``calm`` runs once, ``chaos`` is killed."""
    data = tmp_path_factory.mktemp("evalsets")
    write_beir(data / "beir")
    write_sts(data / "sts.tsv")
    made = {}
    servers = []
    for name in ("calm", "chaos"):
        clone = copy_repository(tmp_path_factory.mktemp(name) / "synthembed")
        (clone / ".venv").symlink_to(REPO / ".venv")
        llm = FakeLLM(by_request=True)
        thread = ServerThread(llm).__enter__()
        hub = FakeHub(user="tester").start()
        servers.append((thread, hub))
        _config(clone, tiny_model_dirs["gemma3"], thread.url, data)
        # The release pushes, so no offline switch may reach it (TRANSFORMERS_OFFLINE is one).
        dropped = ("HF_", "PYTEST", "TRANSFORMERS_OFFLINE")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        env |= {KEY_ENV: "sk-chaos", "HF_TOKEN": hub.token, "HF_ENDPOINT": hub.endpoint,
                "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(clone / ".hf-home"),
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}  # fmt: skip
        made[name] = Pipeline(clone, hub, llm, env)
    yield made
    for thread, hub in servers:
        thread.__exit__()
        hub.stop()


def _lines(folder: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in folder.glob("shard-*.jsonl"))


def kill_moments(chaos: Pipeline) -> list[tuple[str, Callable[[], bool]]]:
    """Where each kill lands, in pipeline order; each is a condition seen from outside."""
    run, build = chaos.clone / "runs" / "chaos", chaos.clone / "build"

    def hub_upload(kind: str) -> Callable[[], bool]:
        prefix = {"dataset": "datasets/", "model": "models/", "space": "spaces/"}[kind]
        pattern = re.compile(rf"/api/{prefix}tester/chaos-\w+/(preupload|commit)")
        return lambda: any(pattern.search(path) for _, path, _ in list(chaos.hub.requests))

    return [
        (
            "seeds: after a brainstorm, before any example",
            lambda: (run / "brainstorm.jsonl").is_file() and _lines(run / "raw") == 0,
        ),
        ("seeds: mid-run, 5 examples in the shard", lambda: _lines(run / "raw") >= 5),
        ("seeds: mid-run again, 14 examples in", lambda: _lines(run / "raw") >= 14),
        (
            "dataset: Parquet being written in the staging folder",
            lambda: any(build.glob(".dataset-build-*/repo/data/*/*.parquet")),
        ),
        (
            "training: the first checkpoint folder appears",
            lambda: any((build / "checkpoints").glob("checkpoint-*")),
        ),
        (
            "training: a later checkpoint is being written",
            lambda: any((build / "checkpoints").glob("checkpoint-6")),
        ),
        (
            "training: the release's model file is being written",
            lambda: (
                (build / "model" / "model.safetensors").exists()
                and not (build / "model" / "training_record.json").exists()
            ),
        ),
        ("model card: evaluation under way", lambda: any((build / "eval").rglob("*.json"))),
        ("release: the dataset's Hub commit under way", hub_upload("dataset")),
        ("release: the model's Hub commit under way", hub_upload("model")),
    ]


def test_killed_anywhere_the_release_ends_as_an_uninterrupted_one(pipelines: dict) -> None:
    calm, chaos = pipelines["calm"], pipelines["chaos"]
    assert calm.make() == 0
    hits = []
    for moment, condition in kill_moments(chaos):
        if chaos.make(until=condition) is None:
            hits.append(moment)
    while chaos.make() is None:  # a re-run after the last kill completes the release
        pass
    assert len(hits) >= 8, hits
    for kind in PUBLISHED:
        _check_published(kind, calm, chaos)
    _check_same_artifacts(calm.clone, chaos.clone)
    _check_endpoint_paid_once(chaos, sum(moment.startswith("seeds") for moment in hits))
    print("kills landed:", *hits, sep="\n  ")


def _files(folder: Path) -> dict[str, bytes]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def _check_same_artifacts(calm: Path, chaos: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    # A resumed run appends new shards: the same rows, cut into more files.
    assert _raw_rows(calm / "runs/chaos/raw") == _raw_rows(chaos / "runs/chaos/raw")
    assert _files(calm / "build/dataset/data") == _files(chaos / "build/dataset/data")
    assert _card_without_run_facts(calm) == _card_without_run_facts(chaos)
    for card in ("card/README.md", "space/README.md"):
        assert (calm / "build" / card).read_text() == (chaos / "build" / card).read_text(), card
    weights = [load_file(root / "build/model/model.safetensors") for root in (calm, chaos)]
    assert weights[0].keys() == weights[1].keys()
    worst = max(float(np.abs(weights[0][k] - weights[1][k]).max()) for k in weights[0])
    assert worst <= 1e-6, worst


def _raw_rows(raw: Path) -> dict[str, bytes]:
    """Each raw record's line, byte for byte, by its id."""
    rows = {}
    for shard in sorted(raw.glob("*.jsonl")):
        for line in shard.read_bytes().splitlines():
            rows[json.loads(line)["id"]] = line
    return rows


def _card_without_run_facts(root: Path) -> list[str]:
    """The dataset card less the lines about the raw run itself (its clock times, its shard
    files and their digest), which an interrupted run has its own of."""
    run_facts = ("- Run `", "- Raw lines read:", "- Source run digest")
    text = (root / "build" / "dataset" / "README.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if not line.startswith(run_facts)]


def _check_published(kind: str, calm: Pipeline, chaos: Pipeline) -> None:
    """One complete commit per repo, as the calm Hub has it, with no partial or temp file."""
    repo_id = f"tester/chaos-{REPO_SUFFIX[kind]}"
    calm_repo, chaos_repo = calm.hub.repo(kind, repo_id), chaos.hub.repo(kind, repo_id)
    assert len(chaos_repo.history("main")) == len(calm_repo.history("main")) == 2  # create + push
    remote = chaos.hub.files(kind, repo_id)
    staged = _files(chaos.clone / "build" / "release" / kind)
    assert all(staged[path] == content for path, content in remote.items() if path in staged)
    # Creating a repo writes .gitattributes on the Hub; anything else hidden would be ours.
    hidden = [path for path in remote if path.startswith(".") and path != ".gitattributes"]
    assert not hidden and not [path for path in remote if ".tmp" in path]
    assert not [p for p in (chaos.clone / "build").rglob("*") if ".tmp-" in p.name]


def _check_endpoint_paid_once(chaos: Pipeline, seeds_kills: int) -> None:
    """No answer the run had kept was asked for again: an item is answered twice only when a
    kill landed while its answer was in flight, before the run could keep it."""
    accepted = {
        json.loads(line)["id"]
        for shard in (chaos.clone / "runs/chaos/raw").glob("shard-*.jsonl")
        for line in shard.read_text().splitlines()
    }
    answered = Counter(s.item for s in chaos.llm.log if s.status == 200 and s.kind == "generate")
    twice = {item: n for item, n in answered.items() if n > 1}
    assert accepted <= set(answered)
    assert sum(n - 1 for n in twice.values()) <= seeds_kills, twice
