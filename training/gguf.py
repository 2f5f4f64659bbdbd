"""GGUF files of the release, written by llama.cpp's own converter.

The converter (``convert_hf_to_gguf.py`` with its ``conversion`` package and the ``gguf-py``
it was written against) ships in the ``llama-cpp-python`` source distribution on PyPI. Only
those files are taken from it: pip downloads the pinned sdist and checks its sha256, nothing
is compiled, and the files are kept once under the kit's cache. The other PyPI candidates
were measured against it: ``gguf`` holds gguf-py alone (no HF converter), and
``convert-hf-to-gguf`` is a third party's repack that installs its own top-level ``gguf``
package over the real one.

Conversion runs ``training/gguf_driver.py`` in a child process, which relabels the
architecture so llama.cpp builds a causal graph and writes last-token pooling into the file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from kit.bundled import cache_root, materialize_once
from kit.errors import StageError
from kit.files import sha256_file

log = logging.getLogger(__name__)

CONVERTER_PACKAGE = "llama-cpp-python"
CONVERTER_VERSION = "0.3.36"
CONVERTER_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
DRIVER = Path(__file__).with_name("gguf_driver.py")
GGUF_FOLDER = "gguf"


class GgufExportError(StageError):
    """The converter could not be installed or could not convert the model."""


def _extract_converter(sdist: Path, out_dir: Path) -> None:
    root = f"llama_cpp_python-{CONVERTER_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith(root)
            and m.name[len(root) :].startswith(CONVERTER_FILES)
            and (m.isfile() or m.isdir())
        ]
        for member in members:
            member.name = member.name[len(root) :]
        archive.extractall(out_dir, members=members, filter="data")
    if not (out_dir / "convert_hf_to_gguf.py").is_file():
        raise GgufExportError(f"{sdist.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")


def _download_converter(out_dir: Path) -> None:
    """pip fetches the pinned sdist with ``--require-hashes``; its hash is checked again here."""
    log.info("installing llama.cpp's converter from %s==%s (once)", CONVERTER_PACKAGE,
             CONVERTER_VERSION)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        requirement = Path(scratch) / "requirements.txt"
        requirement.write_text(
            f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION} --hash=sha256:{CONVERTER_SHA256}\n"
        )
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--no-binary", ":all:", "--require-hashes", "-r", str(requirement),
                   "-d", scratch]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        sdists = list(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or len(sdists) != 1:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise GgufExportError(
                f"pip could not download {CONVERTER_PACKAGE}=={CONVERTER_VERSION}: {tail[0]}"
            )
        if sha256_file(sdists[0]) != CONVERTER_SHA256:
            raise GgufExportError(f"{sdists[0].name} does not have the pinned sha256")
        _extract_converter(sdists[0], out_dir)


def converter_dir(cache: Path | None = None) -> Path:
    """The converter's files, downloaded and unpacked on first use."""
    target = (cache or cache_root()) / f"llama-cpp-converter-{CONVERTER_VERSION}"
    return materialize_once(target, _download_converter)


def convert(model_dir: Path, outtype: str, out_file: Path, converter: Path) -> Path:
    """One GGUF of the folder; the file appears only when the converter succeeded."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".partial-{out_file.name}")
    command = [sys.executable, str(DRIVER), str(converter), str(model_dir),
               "--outtype", outtype, "--outfile", str(partial)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise GgufExportError(f"llama.cpp's converter failed ({outtype}): "
                              f"{lines[-1] if lines else 'no output'}")  # fmt: skip
    os.replace(partial, out_file)
    return out_file


def export_gguf(model_dir: Path, outtypes: list[str], name: str) -> list[Path]:
    """Write ``gguf/<name>-<type>.gguf`` for each type into the model folder."""
    if not outtypes:
        return []
    converter = converter_dir()
    written = []
    for outtype in outtypes:
        target = model_dir / GGUF_FOLDER / f"{name}-{outtype}.gguf"
        log.info("writing %s with llama.cpp's converter", target.relative_to(model_dir))
        written.append(convert(model_dir, outtype, target, converter))
    return written
