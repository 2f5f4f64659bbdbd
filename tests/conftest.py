"""Shared fixtures: offline guard, tiny decoders of three families, a tiny ST model, configs."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.network_guard import guarded
from tests.seeds_fake_server import FakeLLM, ServerThread
from tests.seeds_helpers import API_KEY, API_KEY_ENV

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def offline_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection outside loopback raises inside the test that made it."""
    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))
    yield


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and 2 shared cores lose a lot to contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight decoders (gemma3, qwen2, mistral) with tokenizers trained here."""
    from tests.tiny_models import build_tiny_decoder

    root = tmp_path_factory.mktemp("tiny-decoders")
    return {
        family: build_tiny_decoder(family, root / family)
        for family in ("gemma3", "qwen2", "mistral")
    }


@pytest.fixture(scope="session")
def tiny_st_model_dir(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny sentence-transformers folder on the gemma3 decoder, wrapped like a release."""
    from tests.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(
        tiny_model_dirs["gemma3"], tmp_path_factory.mktemp("tiny-st") / "model"
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a TOML config from section dicts, with project paths inside ``tmp_path``."""
    from tests.toml_writer import dump_toml

    def write(name: str = "config.toml", **sections: dict[str, Any]) -> Path:
        project = {"runs_dir": str(tmp_path / "runs"), "build_dir": str(tmp_path / "build")}
        project.update(sections.pop("project", {}))
        path = tmp_path / name
        path.write_text(dump_toml({"project": project, **sections}), encoding="utf-8")
        return path

    return write


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ServerThread]]:
    """Start fake servers on 127.0.0.1; all are stopped after the test."""
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    started: list[ServerThread] = []

    def start(**knobs: object) -> ServerThread:
        server = ServerThread(FakeLLM(**knobs)).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
