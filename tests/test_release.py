"""The release push, through the real huggingface_hub client against a loopback Hub.

Every push goes to :class:`tests.fake_hub.FakeHub`; the round trip is then checked by the
real consumers (``load_dataset``, ``SentenceTransformer``, ``snapshot_download`` and the
Space app launched from the downloaded files) in a fresh interpreter.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import kit
from tests.fake_hub import FakeHub
from tests.release_staging import DATASET_ROWS, JUNK, SPACE_CORPUS, build_release

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "tester"
HUB = {
    "namespace": NAMESPACE,
    "dataset_repo": "tiny-data",
    "model_repo": "tiny-embedder",
    "space_repo": "tiny-demo",
    "commit_retries": 1,
}
SPACE_QUERY = "how do I cook pasta"
DATASET_ID, MODEL_ID, SPACE_ID = (f"{NAMESPACE}/{HUB[k]}" for k in HUB if k.endswith("_repo"))


@pytest.fixture(scope="module")
def release_template(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    return build_release(tmp_path_factory.mktemp("release") / "build", tiny_st_model_dir)


@pytest.fixture
def build_dir(tmp_path: Path, release_template: Path) -> Path:
    """A private copy of the staged release at the ``build_dir`` that ``write_config`` uses."""
    return Path(shutil.copytree(release_template, tmp_path / "build"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A loopback Hub that the release (run in this process) talks to; no token set yet."""
    from huggingface_hub import constants

    with FakeHub(user=NAMESPACE, orgs=("tiny-org",)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield server


@pytest.fixture
def config(write_config: Callable[..., Path], build_dir: Path) -> Path:
    return write_config(hub=HUB)


def release(config_path: Path, *extra: str) -> int:
    from kit.cli import run_stage
    from release.__main__ import add_arguments

    return run_stage(
        "release", "release.stage:main", ["--config", str(config_path), *extra], add_arguments,
        runs_anyway=lambda args: args.dry_run,
    )  # fmt: skip


def push(hub: FakeHub, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("HF_TOKEN", hub.token)
    return release(config_path)


def staged_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def repo_files(build_dir: Path, kind: str) -> dict[str, bytes]:
    """What the stages published for one repo: the model repo is the model and its card
    (the card's README over the one sentence-transformers wrote into the tiny model)."""
    if kind == "model":
        return {**staged_files(build_dir / "model"), **staged_files(build_dir / "card")}
    return staged_files(build_dir / kind)


def without_junk(kind: str, files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path not in JUNK[kind]}


def commit_titles(hub: FakeHub, kind: str, repo_id: str) -> list[str]:
    return [c.title for c in hub.repo(kind, repo_id).history("main")]


# -- pushing --------------------------------------------------------------------------------


def test_push_publishes_exactly_the_allow_listed_files(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert push(hub, config, monkeypatch) == 0

    for kind, repo_id in (("dataset", DATASET_ID), ("model", MODEL_ID), ("space", SPACE_ID)):
        remote = hub.files(kind, repo_id)
        assert remote.pop(".gitattributes")  # the Hub's own, left alone
        assert remote == without_junk(kind, repo_files(build_dir, kind)), kind
        assert not set(JUNK[kind]) & set(remote)
    # The Hub reads evaluation results from a hidden folder that the ".*" ignore would skip.
    assert ".eval_results/mteb.yaml" in hub.files("model", MODEL_ID)
    assert hub.repo("space", SPACE_ID).sdk == "gradio"
    assert not hub.repo("model", MODEL_ID).private
    # Weights and shards went through LFS (batch, upload, verify); text went inline.
    assert hub.repo("model", MODEL_ID).head().files["model.safetensors"].lfs
    assert not hub.repo("model", MODEL_ID).head().files["modules.json"].lfs
    assert hub.requests_to("POST", r"/_lfs/verify")
    out = capsys.readouterr().out
    assert out.count("(new commit)") == 3


def test_commit_message_names_kit_version_and_config_hash(
    hub: FakeHub, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    assert push(hub, config, monkeypatch) == 0
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    commit = hub.repo("model", MODEL_ID).head()
    assert kit.__version__ in commit.title and digest[:12] in commit.title
    assert f"sha256:{digest}" in commit.message


def test_unchanged_rerun_makes_no_new_commit(
    hub: FakeHub, config: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    assert push(hub, config, monkeypatch) == 0
    heads = {k: hub.repo(k, r).head().oid for k, r in _repos()}
    capsys.readouterr()
    seen = len(hub.requests)

    with caplog.at_level(logging.INFO, logger="release"):
        assert push(hub, config, monkeypatch) == 0  # its provenance says: pushed already
    assert "up to date: nothing to do" in caplog.text and len(hub.requests) == seen

    assert release(config, "--force") == 0  # pushed again: the Hub drops unchanged files
    assert {k: hub.repo(k, r).head().oid for k, r in _repos()} == heads
    assert all(len(commit_titles(hub, k, r)) == 2 for k, r in _repos())  # initial + release
    assert capsys.readouterr().out.count("(unchanged, no commit)") == 3


def test_changed_file_and_removed_shard_make_one_commit(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert push(hub, config, monkeypatch) == 0
    data = build_dir / "dataset" / "data" / "sts"
    (data / "validation-00000-of-00001.parquet").rename(data / "validation-00000-of-00002.parquet")
    readme = build_dir / "dataset" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nMore words.\n", encoding="utf-8")

    assert push(hub, config, monkeypatch) == 0

    remote = hub.files("dataset", DATASET_ID)
    assert "data/sts/validation-00000-of-00001.parquet" not in remote  # stale shard deleted
    assert "data/sts/validation-00000-of-00002.parquet" in remote
    assert remote["README.md"] == readme.read_bytes()
    assert ".gitattributes" in remote
    assert len(commit_titles(hub, "dataset", DATASET_ID)) == 3
    assert len(commit_titles(hub, "model", MODEL_ID)) == 2  # untouched repo: no commit


def test_private_repos_and_tag(
    hub: FakeHub,
    write_config: Callable[..., Path],
    build_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    config = write_config(hub={**HUB, "private": True, "tag": "v1"})
    assert push(hub, config, monkeypatch) == 0
    assert push(hub, config, monkeypatch) == 0  # same tag on the same commit: fine

    for kind, repo_id in _repos():
        repo = hub.repo(kind, repo_id)
        assert repo.private and repo.tags == {"v1": repo.head().oid}
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).model_info(MODEL_ID)

    (build_dir / "space" / "app.py").write_text("print('changed')\n", encoding="utf-8")
    capsys.readouterr()
    assert push(hub, config, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "tag 'v1' already exists" in err and "set a new hub.tag" in err
    space = hub.repo("space", SPACE_ID)
    assert space.tags["v1"] != space.head().oid  # the tag never moves


def test_private_config_refuses_to_push_into_a_public_repo(
    hub: FakeHub,
    write_config: Callable[..., Path],
    build_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    assert push(hub, write_config(hub=HUB), monkeypatch) == 0
    heads = {k: hub.repo(k, r).head().oid for k, r in _repos()}
    (build_dir / "dataset" / "README.md").write_text("---\n---\nsecret draft\n", encoding="utf-8")

    assert push(hub, write_config("private.toml", hub={**HUB, "private": True}), monkeypatch) == 2

    assert "exists and is public" in capsys.readouterr().err
    assert {k: hub.repo(k, r).head().oid for k, r in _repos()} == heads


# -- faults ---------------------------------------------------------------------------------


def test_5xx_during_upload_and_commit_is_retried_into_one_whole_commit(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.fail("PUT", r"^/_lfs/upload/", status=503, times=1)
    hub.fail("POST", r"^/api/models/.*/commit/main$", status=502, times=1)

    assert push(hub, config, monkeypatch) == 0

    puts = [(path, status) for method, path, status in hub.requests if method == "PUT"]
    refused = [path for path, status in puts if status == 503]
    assert len(refused) == 1 and (refused[0], 200) in puts  # the same object, sent again
    assert [s for _, _, s in hub.requests_to("POST", r"/api/models/.*/commit/")] == [502, 200]
    remote = hub.files("model", MODEL_ID)
    remote.pop(".gitattributes")
    assert remote == without_junk("model", repo_files(build_dir, "model"))
    assert len(commit_titles(hub, "model", MODEL_ID)) == 2


def test_failed_commit_leaves_the_repo_as_it_was_and_a_rerun_completes(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert push(hub, config, monkeypatch) == 0
    before = hub.files("dataset", DATASET_ID)
    head = hub.repo("dataset", DATASET_ID).head().oid
    data = build_dir / "dataset" / "data" / "retrieval"
    (data / "train-extra.parquet").write_bytes(b"PAR1 bytes of a new shard PAR1")
    capsys.readouterr()
    hub.fail("POST", r"^/api/datasets/.*/commit/main$", status=500, times=2)  # 1 try + 1 retry
    seen = len(hub.requests)

    assert push(hub, config, monkeypatch) == 2

    err = capsys.readouterr().err
    assert "500" in err and DATASET_ID in err
    assert hub.repo("dataset", DATASET_ID).head().oid == head
    assert hub.files("dataset", DATASET_ID) == before  # no half-made commit
    assert not [p for _, p, _ in hub.requests[seen:] if "/models/" in p]  # stopped there

    assert push(hub, config, monkeypatch) == 0
    assert "data/retrieval/train-extra.parquet" in hub.files("dataset", DATASET_ID)
    assert len(commit_titles(hub, "dataset", DATASET_ID)) == 3


def test_wrong_token_is_a_clear_error_that_never_shows_the_token(
    hub: FakeHub, config: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    secret = "hf_ThisIsAWrongSecretToken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)

    assert release(config) == 2

    captured = capsys.readouterr()
    assert "refused the token in $HF_TOKEN (HTTP 401)" in captured.err
    for text in (captured.out, captured.err, caplog.text):
        assert secret not in text
    assert not hub.repos  # nothing was created or uploaded


def test_token_env_names_the_variable_and_namespace_must_be_writable(
    hub: FakeHub, write_config: Callable[..., Path], build_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.token)  # ignored: the config names another variable
    config = write_config(hub={**HUB, "token_env": "RELEASE_TOKEN"})
    assert release(config) == 0
    assert "no token in $RELEASE_TOKEN" in capsys.readouterr().out
    assert not hub.requests

    monkeypatch.setenv("RELEASE_TOKEN", hub.token)
    other = write_config("other.toml", hub={**HUB, "namespace": "someone-else"})
    assert release(other) == 2
    assert "hub.namespace 'someone-else' is not the token's user" in capsys.readouterr().err
    assert not hub.repos


def test_offline_mode_with_a_token_stops_before_any_request(
    hub: FakeHub, config: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert push(hub, config, monkeypatch) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert not hub.requests


def test_missing_staged_folder_names_the_make_target(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    (build_dir / "space" / "app.py").unlink()
    assert push(hub, config, monkeypatch) == 2
    assert "has no app.py: run `make space` first" in capsys.readouterr().err
    shutil.rmtree(build_dir / "model")
    assert push(hub, config, monkeypatch) == 2
    assert "does not exist: run `make train` first" in capsys.readouterr().err
    assert not hub.requests


# -- no token: list and exit 0 --------------------------------------------------------------


def test_without_token_the_cli_lists_what_it_would_push_and_exits_0(
    hub: FakeHub, config: Path, build_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "release", "--config", str(config)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Nothing pushed (no token in $HF_TOKEN)" in out
    for kind, repo_id in _repos():
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[kind]
        assert f"{hub.endpoint}/{prefix}{repo_id} (public)" in out
        for path in without_junk(kind, repo_files(build_dir, kind)):
            assert path in out
    assert "model.safetensors" in out and "kB" in out  # sizes are shown
    assert "not published (outside the allow-list): 5" in out  # the model's junk
    assert not hub.requests  # nothing contacted the Hub


# -- the round trip through the real consumers ------------------------------------------------


@pytest.mark.slow
def test_pushed_release_loads_with_datasets_sentence_transformers_and_the_space_launches(
    hub: FakeHub, config: Path, build_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer

    assert push(hub, config, monkeypatch) == 0
    texts = ["pasta dinner", "Brot backen", "東京 ラーメン"]
    request = {
        "dataset": DATASET_ID,
        "configs": list(DATASET_ROWS),
        "model": MODEL_ID,
        "space": SPACE_ID,
        "texts": texts,
        "space_query": SPACE_QUERY,
    }
    (tmp_path / "request.json").write_text(json.dumps(request), encoding="utf-8")
    env = _user_env(hub, tmp_path / "user-home")
    subprocess.run(
        [sys.executable, "-m", "tests.release_consumer", "request.json", "result.json"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT), "MODEL_ID": MODEL_ID, "DATASET_ID": DATASET_ID},
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))

    for cfg in DATASET_ROWS:
        local = load_dataset(str(build_dir / "dataset"), cfg)
        assert result["rows"][cfg] == {split: ds.to_list() for split, ds in local.items()}
    model = SentenceTransformer(str(build_dir / "model"))
    queries, documents = np.array(result["queries"]), np.array(result["documents"])
    np.testing.assert_allclose(queries, model.encode_query(texts), atol=1e-6)
    np.testing.assert_allclose(documents, model.encode_document(texts), atol=1e-6)
    assert not np.allclose(queries, documents)  # the query prompt came along with the model
    space_dir = Path(result["space_dir"])
    assert staged_files(space_dir) == {
        ".gitattributes": (space_dir / ".gitattributes").read_bytes(),
        **without_junk("space", repo_files(build_dir, "space")),
    }

    scores = model.similarity(
        model.encode_query([SPACE_QUERY]), model.encode_document(SPACE_CORPUS)
    )
    assert result["answer"] == SPACE_CORPUS[int(scores.argmax())]  # ranked with the pushed model


def _repos() -> list[tuple[str, str]]:
    return [("dataset", DATASET_ID), ("model", MODEL_ID), ("space", SPACE_ID)]


def _user_env(hub: FakeHub, home: Path) -> dict[str, str]:
    """A downstream user's environment: online, anonymous, empty cache, this Hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    return {
        **env,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(home / "gradio"),
    }
