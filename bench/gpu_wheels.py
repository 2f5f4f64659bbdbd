"""Check the carried wheel set with no network: ``python -m bench.gpu_wheels [--wheels .whl]``.

The wheels in ``.whl`` (those ``bench/gpu_wheels.txt`` pins) must resolve, for CPython 3.12
on x86-64, against the packages preinstalled on the GPU machine (``bench/gpu_device.txt``),
and fit the 64 MiB a device call carries. pip's own resolver decides (``pip install
--dry-run --no-index``); each preinstalled package that is not carried stands in as an
empty wheel of the version the device list gives (the oldest possible where no version is
recorded). A requirement nothing meets is recorded as missing and stood in for, so one run
lists every missing package.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CARRIED = HERE / "gpu_wheels.txt"
DEVICE = HERE / "gpu_device.txt"
CARRY_LIMIT = 64 * 2**20
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
UNRECORDED = "0"  # older than any release: a bare name meets no minimum
MET = "99999"  # a stand-in for a package found missing, so the search goes on
UNMET = re.compile(r"satisfies the requirement ([A-Za-z0-9_.\-]+)")
CONFLICT = re.compile(r"^\s*(\S+ \S+) depends on ([A-Za-z0-9_.\-]+)(\S*)", re.M)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            pins[_normal(name)] = version.strip()
    return pins


def read_device(path: Path) -> dict[str, str]:
    """The version each preinstalled package stands in with."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:(==|>=)\s*(\S+))?", text)
        if match is None:
            raise ValueError(f"{path}: cannot read {line!r}")
        name, _, version = match.groups()
        found[_normal(name)] = version or UNRECORDED
    return found


def stand_in(name: str, version: str, folder: Path) -> Path:
    """An empty wheel that only says ``name`` ``version`` is there."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "RECORD": "",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for file, text in files.items():
            wheel.writestr(f"{dist}.dist-info/{file}", text)
    return path


def _resolve(wheels: Path, stand_ins: Path, target: Path) -> subprocess.CompletedProcess:
    report = target / "report.json"
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
        "--find-links", str(wheels), "--find-links", str(stand_ins), "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
        *(f"--platform={platform}" for platform in PLATFORMS),
        "--target", str(target / "site"), "--report", str(report), "-r", str(CARRIED),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _unmet(result: subprocess.CompletedProcess, device: dict[str, str]) -> tuple[str, str] | None:
    """The package pip could not place, and why: no version meets a requirement, or the
    requirements of several packages on it conflict with the one the device has."""
    unmet = UNMET.search(result.stderr)
    if unmet is not None:
        line = result.stderr[unmet.start():].splitlines()[0]
        return _normal(unmet.group(1)), line.removeprefix("satisfies the requirement ").strip()
    needs = CONFLICT.findall(result.stdout)
    if not needs:
        return None
    name = _normal(needs[0][1])
    demands = [f"{who} needs {wanted}{spec}" for who, wanted, spec in needs if spec]
    has = device.get(name, "none")
    return name, f"{name}: {'; '.join(demands)}; the device has {has} (bench/gpu_device.txt)"


def check(wheels: Path, tree_bytes: int) -> dict[str, object]:
    """Missing packages, the resolution pip found, and the bytes a device call carries."""
    pins = read_pins(CARRIED)
    present = {}
    for wheel in wheels.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        present[_normal(name)] = version
    absent = sorted(f"{name}=={pin}" for name, pin in pins.items() if present.get(name) != pin)
    carried = sum(w.stat().st_size for w in wheels.glob("*.whl"))
    device = {name: v for name, v in read_device(DEVICE).items() if name not in pins}
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as scratch:
        root = Path(scratch)
        stand_ins = root / "device"
        stand_ins.mkdir()
        for name, version in device.items():
            stand_in(name, version, stand_ins)
        while True:
            result = _resolve(wheels, stand_ins, root)
            found = _unmet(result, device)
            if result.returncode == 0 or found is None:
                break
            name, why = found
            missing.append(why)
            if name in device:
                (stand_ins / f"{name.replace('-', '_')}-{device[name]}-py3-none-any.whl").unlink()
            stand_in(name, MET, stand_ins)
        resolved = {}
        if result.returncode == 0:
            report = json.loads((root / "report.json").read_text(encoding="utf-8"))
            resolved = {item["metadata"]["name"]: item["metadata"]["version"]
                        for item in report["install"]}  # fmt: skip
    return {
        "resolves": result.returncode == 0 and not missing and not absent,
        "wheels_absent_from_folder": absent,
        "missing": missing,
        "error": "" if result.returncode == 0 else result.stderr.strip().splitlines()[-1],
        "carried_from_folder": {n: v for n, v in resolved.items() if _normal(n) in pins},
        "from_the_device": {n: v for n, v in resolved.items()
                            if _normal(n) not in pins and v != MET},  # fmt: skip
        "carried_mb": round(carried / 2**20, 2),
        "working_tree_mb": round(tree_bytes / 2**20, 2),
        "fits": carried + tree_bytes <= CARRY_LIMIT,
    }


def _tree_bytes() -> int:
    """Tracked and untracked-not-ignored files: what a device call sends besides the wheels."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=HERE.parent, capture_output=True, check=True).stdout  # fmt: skip
    paths = [HERE.parent / p for p in listed.decode().split("\0") if p]
    return sum(p.stat().st_size for p in paths if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_wheels")
    parser.add_argument("--wheels", type=Path, default=HERE.parent / ".whl")
    args = parser.parse_args()
    result = check(args.wheels, _tree_bytes())
    print(json.dumps(result, indent=2))
    return 0 if result["resolves"] and result["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
