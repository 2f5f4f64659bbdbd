"""Bundled offline models: built once, safe under races and crashes, loadable offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kit.bundled import (
    BundledModelError,
    check_model_reference,
    materialize_once,
    resolve_model,
    smollm2_gguf_path,
)

REPO = Path(__file__).resolve().parent.parent

SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kit.bundled import materialize_once

    target, log = Path(sys.argv[1]), Path(sys.argv[2])
    def build(out):
        with log.open("a") as f:
            f.write("build\\n")
        out.mkdir()
        (out / "weights.bin").write_bytes(b"x" * 1000)
        time.sleep(float(sys.argv[3]))
        (out / "config.json").write_text("{}")
    print(materialize_once(target, build))
    """
)


def _start(target: Path, log: Path, sleep_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, str(target), str(log), str(sleep_s)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_build_once(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "model", tmp_path / "builds.log"
    first, second = _start(target, log, 1.5), _start(target, log, 1.5)
    outputs = [p.communicate(timeout=60)[0].strip() for p in (first, second)]
    assert outputs == [str(target), str(target)]
    assert log.read_text() == "build\n"
    assert sorted(p.name for p in target.iterdir()) == [
        ".synthembed-complete",
        "config.json",
        "weights.bin",
    ]
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".model-")] == []


def test_killed_build_leaves_no_target_and_next_run_builds(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "model", tmp_path / "builds.log"
    victim = _start(target, log, 30)
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert not target.exists()
    survivor = _start(target, log, 0)
    assert survivor.communicate(timeout=60)[0].strip() == str(target)
    assert (target / "config.json").read_text() == "{}"
    assert log.read_text() == "build\nbuild\n"


def test_failed_build_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def broken(out: Path) -> None:
        out.mkdir()
        (out / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        materialize_once(target, broken)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".model.lock"]


def test_model_references(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("mistralai/Mistral-7B-v0.1") == "mistralai/Mistral-7B-v0.1"
    with pytest.raises(BundledModelError, match="model path does not exist: ./missing"):
        check_model_reference("./missing")
    with pytest.raises(BundledModelError, match="unknown bundled model 'gpt-5'"):
        resolve_model("bundled:gpt-5")


def test_bundled_generator_gguf_ships_with_the_package() -> None:
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_bundled_gemma_materializes_and_loads_with_transformers() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(resolve_model("bundled:gemma-3-270m"))
    assert (folder / "model.safetensors").is_file()
    assert resolve_model("bundled:gemma-3-270m") == str(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "gemma3_text"
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<eos>" and tokenizer.bos_token == "<bos>"
    assert tokenizer("hello world").input_ids[0] == tokenizer.bos_token_id
