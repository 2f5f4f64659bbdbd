"""The GPU check runs on CPU at toy sizes, every phase, so it cannot rot while no GPU is at
hand; and a phase that fails keeps the others and what was measured before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_whole_gpu_check_passes_every_phase_at_toy_sizes(tmp_path: Path) -> None:
    """``python -m bench.gpu_check --tiny``, ZeRO-2 and ZeRO-3 phases included."""
    from bench.gpu_check import PHASES, TINY

    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_BUILD_OPS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--tiny", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    phases = report["phases"]
    assert list(phases) == list(PHASES)
    failed = {name: phase.get("error") for name, phase in phases.items() if phase["status"] != "ok"}
    assert not failed
    assert all(phase["results"] for phase in phases.values())
    versions = {r["library"]: r.get("version") for r in phases["environment"]["results"]}
    assert versions["deepspeed"] and versions["transformers"]
    for stage in (2, 3):
        (zero,) = phases[f"zero{stage}"]["results"]
        assert zero["zero_stage"] == stage and zero["steps"] == 2 and zero["tokens_per_s"] > 0
        assert 0 < zero["checkpoint_mb"] < 2
    assert phases["bf16_vs_fp32"]["results"][0]["min_cosine"] > 0.99
    cells = phases["loss_steps"]["results"]
    assert [(c["model"], c["batch"], c["loss"].split()[0]) for c in cells] == [
        (shape.family, batch, name)
        for shape in TINY
        for batch in shape.batches
        for name in ("kit", "stock")
    ]
    for cell in cells:
        assert cell["tokens"] > 0 and cell["tokens_per_s"] > 0 and 0 <= cell["mfu"] < 1
        assert cell["plan_flops"] > 0 and cell["plan_memory_gb"] >= 0
    (evaluated,) = phases["evaluation"]["results"]
    assert evaluated["scores_agree"] and evaluated["trained"]["device"] == "cpu"


def test_a_failing_phase_keeps_the_others_and_every_measurement(tmp_path, monkeypatch) -> None:
    """Each measurement is in the file as soon as it is taken: a phase that fails midway
    keeps what it measured, and the phases after it still run."""
    import bench.gpu_check as gpu_check

    def measures_then_fails(run, add) -> None:  # noqa: ANN001 - the phase signature
        add({"measured": 1})
        written = json.loads((tmp_path / "gpu_check.json").read_text())
        assert written["phases"]["first"]["results"] == [{"measured": 1}]
        raise RuntimeError("device lost")

    def second(run, add) -> None:  # noqa: ANN001
        add({"measured": 2})

    monkeypatch.setattr(gpu_check, "PHASES", {"first": measures_then_fails, "second": second})
    report = gpu_check.run(tmp_path, tiny=True)
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written == report
    first, following = written["phases"]["first"], written["phases"]["second"]
    assert first["status"] == "failed" and first["error"] == "RuntimeError: device lost"
    assert first["results"] == [{"measured": 1}]
    assert following["status"] == "ok" and following["results"] == [{"measured": 2}]


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    import zipfile

    dist = f"{name}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{dist}.dist-info/METADATA", metadata)
        wheel.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")


def test_the_wheel_check_names_every_package_the_device_lacks(tmp_path, monkeypatch) -> None:
    """pip resolves the carried wheels offline for CPython 3.12 against stand-ins of the
    device's packages; each requirement nothing meets is named, not only the first."""
    import bench.gpu_wheels as gpu_wheels

    wheels = tmp_path / "whl"
    wheels.mkdir()
    _wheel(wheels, "alpha", "1.0", ("beta>=2", "gamma>=1", "delta"))
    (tmp_path / "carried.txt").write_text("# carried\nalpha==1.0\n")
    device = tmp_path / "device.txt"
    monkeypatch.setattr(gpu_wheels, "CARRIED", tmp_path / "carried.txt")
    monkeypatch.setattr(gpu_wheels, "DEVICE", device)
    device.write_text("beta==1.5\ngamma\ndelta\n")
    result = gpu_wheels.check(wheels, tree_bytes=1000)
    assert result["resolves"] is False and result["fits"] is True
    assert [line.split()[0] for line in result["missing"]] == ["beta>=2", "gamma>=1"]
    device.write_text("beta>=2.0  # vouched for by another package\ngamma==1.1\ndelta\n")
    result = gpu_wheels.check(wheels, tree_bytes=1000)
    assert result["resolves"] is True and result["missing"] == []
    assert result["carried_from_folder"] == {"alpha": "1.0"}
    assert result["from_the_device"] == {"beta": "2.0", "gamma": "1.1", "delta": "0"}
    assert gpu_wheels.check(wheels, tree_bytes=64 * 2**20)["fits"] is False
