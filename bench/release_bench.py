"""Pushing a staged release to a loopback Hub: the release stage against ``HfApi.upload_folder``.

The staged release is synthetic but shaped like a real one (Parquet shards, plots, a 32 MB
safetensors file, a training checkpoint left next to the model, the Space files). Each
contender pushes the three repos to its own fresh :class:`tests.fake_hub.FakeHub`, then pushes
again unchanged. The peers are ``upload_folder`` with the release's allow-list and plain
``upload_folder`` of the whole folder, as one would type it by hand.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kit.config import Config, HubSection

MODEL_BYTES = 32 * 1024 * 1024
KINDS = ("dataset", "model", "space")


def _stage(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    build = root / "build"
    configs = ("retrieval", "classification", "short_short", "long_long", "sts", "bitext")
    for cfg in configs:
        for split, rows in (("train", 4000), ("validation", 400)):
            shard = build / "dataset" / "data" / cfg / f"{split}-00000-of-00001.parquet"
            shard.parent.mkdir(parents=True, exist_ok=True)
            texts = [os.urandom(48).hex() for _ in range(rows)]
            pq.write_table(pa.table({"query": texts, "positive": texts[::-1]}), shard)
    blocks = "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: data/{c}/train-*\n"
        for c in configs
    )
    (build / "dataset" / "README.md").write_text(f"---\nconfigs:\n{blocks}---\n# bench\n")
    for name in ("languages.png", "task_type_counts.png", "length_distributions.png"):
        (build / "dataset" / name).write_bytes(os.urandom(60_000))
    model = build / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(MODEL_BYTES))
    for name in ("config.json", "modules.json", "config_sentence_transformers.json",
                 "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json"):  # fmt: skip
        (model / name).write_text('{"bench": true}\n')
    (model / "README.md").write_text("---\nlibrary_name: sentence-transformers\n---\n# bench\n")
    (model / "checkpoint-500").mkdir()
    (model / "checkpoint-500" / "model.safetensors").write_bytes(os.urandom(MODEL_BYTES))
    (model / "checkpoint-500" / "optimizer.pt").write_bytes(os.urandom(2 * MODEL_BYTES))
    space = build / "space"
    space.mkdir()
    (space / "app.py").write_text("import gradio\n")
    (space / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\n---\n# bench\n")
    (space / "requirements.txt").write_text("gradio\n")
    (space / "settings.json").write_text("{}\n")
    return build


def _release(build: Path, root: Path) -> Callable[[object, str, str], None]:
    from release.stage import publish
    from release.staging import plan_repo

    config_path = root / "bench.toml"
    config_path.write_text('[hub]\nnamespace = "bench"\n')
    config = Config(hub=HubSection(namespace="bench"), path=config_path)
    repos = {"dataset": config.hub.dataset_repo, "model": config.hub.model_repo,
             "space": config.hub.space_repo}  # fmt: skip
    plans = [plan_repo(kind, f"bench/{repos[kind]}", build / kind) for kind in KINDS]

    def push(hub, token: str, endpoint: str) -> None:
        publish(config, plans, token, endpoint)

    return push


def _upload_folder(build: Path, allow_listed: bool) -> Callable[[object, str, str], None]:
    from huggingface_hub import HfApi

    from release.staging import ALLOW_PATTERNS, IGNORE_PATTERNS

    def push(hub, token: str, endpoint: str) -> None:
        api = HfApi(endpoint=endpoint, token=token)
        for kind in KINDS:
            repo_id = f"bench/{kind}-repo"
            sdk = "gradio" if kind == "space" else None
            api.create_repo(repo_id, repo_type=kind, exist_ok=True, space_sdk=sdk)
            patterns = {}
            if allow_listed:
                patterns = {"allow_patterns": list(ALLOW_PATTERNS[kind]),
                            "ignore_patterns": list(IGNORE_PATTERNS)}  # fmt: skip
            api.upload_folder(repo_id=repo_id, folder_path=build / kind, repo_type=kind,
                              **patterns)  # fmt: skip

    return push


def _measure(push: Callable[[object, str, str], None]) -> dict[str, float]:
    from tests.fake_hub import FakeHub

    with FakeHub(user="bench") as hub:
        started = time.perf_counter()
        push(hub, hub.token, hub.endpoint)
        first = time.perf_counter() - started
        commits = sum(len(r.commits) for r in hub.repos.values())
        requests = len(hub.requests)
        started = time.perf_counter()
        push(hub, hub.token, hub.endpoint)
        again = time.perf_counter() - started
        return {
            "first_s": first,
            "again_s": again,
            "new_commits_again": sum(len(r.commits) for r in hub.repos.values()) - commits,
            "uploaded_mb": sum(len(v) for v in hub.lfs_objects.values()) / 2**20,
            "files": sum(len(r.head().files) - 1 for r in hub.repos.values()),
            "requests_first": requests,
        }


def run(config_path: str) -> str:
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_XET = True  # the loopback Hub speaks LFS, not Xet
    constants.HF_HUB_OFFLINE = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build = _stage(root)
        results = {
            "release stage (kit)": _measure(_release(build, root)),
            "upload_folder + same allow-list (peer)": _measure(_upload_folder(build, True)),
            "upload_folder, whole folder (peer)": _measure(_upload_folder(build, False)),
        }
    rows = "".join(
        f"| {name} | {r['first_s']:.2f} | {r['again_s']:.2f} | {r['new_commits_again']} | "
        f"{r['files']} | {r['uploaded_mb']:.1f} | {r['requests_first']} |\n"
        for name, r in results.items()
    )
    ours, peer = results["release stage (kit)"], results["upload_folder + same allow-list (peer)"]
    return (
        "## Release push to a loopback Hub (tests/fake_hub.py, LFS transfer)\n\n"
        "Staged release: 12 Parquet shards, 3 plots, a 32 MB model.safetensors, a 96 MB "
        "checkpoint folder beside the model, 4 Space files. Each contender pushes the three "
        "repos to a fresh loopback Hub, then pushes again with nothing changed.\n\n"
        "| contender | first push s | unchanged re-push s | commits on re-push | files "
        "published | LFS MB uploaded | HTTP requests (first push) |\n"
        "|---|---|---|---|---|---|---|\n"
        f"{rows}\n"
        f"Ratio kit / upload_folder with the same allow-list: first push "
        f"**{ours['first_s'] / peer['first_s']:.2f}x**, unchanged re-push "
        f"**{ours['again_s'] / peer['again_s']:.2f}x** (the kit also checks the token, "
        "lists the remote tree to delete stale files, and reads the head commit).\n"
    )
