"""Benchmark: decontamination at paper scale, 500k rows against MTEB(eng, v2)'s texts.

MTEB(eng, v2)'s data lives on the Hub, which these machines cannot reach, so its texts are
synthesized at the benchmark's real sizes: mteb ships each task's descriptive statistics
(texts and mean characters per text, per split and subset) in the package, and every text
statistic of every task of the benchmark becomes that many texts of that mean length, drawn
from a Zipf-distributed vocabulary. Training rows have the paper's shape (a ~12-word query,
two ~130-word documents), and every 500th row carries a 20-word window of an evaluation
text, so the count found is checked. The kit's index (``kit.decontamination``) is measured
at growing fractions of the benchmark with growing row counts; the named peer is the plain
way, a Python set of 13-word tuples, at the smallest fraction.

``python -m bench.decontamination_bench --fractions 0.0625 0.125 --rows 62500 125000``
picks sizes; ``run`` (``make bench``) does the two smallest, ``SYNTHEMBED_BENCH_FULL=1``
adds the larger ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench import full_run

BENCHMARK = "MTEB(eng, v2)"
N = 13
CHARS_PER_WORD = 6.1  # English: ~5.1 letters and a space
VOCABULARY = 200_000
PLANT_EVERY = 500
BATCH_ROWS = 10_000
DEFAULT = ((1 / 64, 7_812), (1 / 16, 31_250))
FULL = ((1 / 4, 500_000), (1.0, 500_000))
# A size runs only when its peak, extrapolated from the last size's, fits in this share of
# the memory available now (the machine is shared).
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class TextSet:
    task: str
    statistic: str
    texts: int
    mean_chars: float


@cache
def text_sets() -> list[TextSet]:
    """Every text statistic of the benchmark's tasks, for the splits and subsets it runs."""
    from kit.registry_tasks import benchmark_tasks

    found = []
    for task in benchmark_tasks(BENCHMARK):
        stats = task.task.metadata.descriptive_stats or {}
        for split in task.splits:
            split_stats = stats.get(split, {})
            by_subset = split_stats.get("hf_subset_descriptive_stats")
            parts = [by_subset[s] for s in task.subsets] if by_subset else [split_stats]
            for part in parts:
                for key, value in part.items():
                    # Labels are not texts (and are shorter than the gate's 4 words).
                    if "label" in key or not (
                        isinstance(value, dict) and value.get("average_text_length")
                    ):
                        continue
                    count = round(value["total_text_length"] / value["average_text_length"])
                    found.append(TextSet(task.name, key, count, value["average_text_length"]))
    return found


class Words:
    """A fixed random vocabulary with Zipf-like word frequencies."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        lengths = rng.integers(2, 9, VOCABULARY)
        letters = rng.integers(97, 123, lengths.sum()).astype(np.uint8).tobytes().decode()
        ends = np.cumsum(lengths)
        self.words = pa.array([letters[e - n : e] for e, n in zip(ends, lengths, strict=True)])
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.05
        self.cumulative = np.cumsum(weights / weights.sum())

    def texts(self, rng: np.random.Generator, count: int, mean_words: float) -> pa.Array:
        lengths = np.maximum(1, rng.poisson(mean_words, count))
        picks = np.searchsorted(self.cumulative, rng.random(int(lengths.sum())))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), self.words.take(pa.array(picks)))
        return pc.binary_join(lists, " ").cast(pa.string())


def evaluation_sets(
    words: Words, fraction: float, spent: list[tuple[float, float]] | None = None
) -> Iterator[tuple[str, Any]]:
    """(set name, loader) at ``fraction`` of the benchmark's real sizes; texts are made when
    the set is read, one set at a time, as the stage loads one task at a time. The (wall,
    CPU) seconds spent making them go to ``spent``, to be left out of the index's time."""
    for i, found in enumerate(text_sets()):
        count = max(1, int(found.texts * fraction))
        mean_words = max(1.0, found.mean_chars / CHARS_PER_WORD)

        def load(i: int = i, count: int = count, mean_words: float = mean_words) -> list:
            started, cpu = time.perf_counter(), time.process_time()
            texts = words.texts(np.random.default_rng(1000 + i), count, mean_words)
            if spent is not None:
                spent.append((time.perf_counter() - started, time.process_time() - cpu))
            return [texts]

        yield f"{found.task}/{found.statistic}", load


def _plants(words: Words, fraction: float, count: int) -> list[str]:
    """20-word windows of the evaluation texts of one retrieval corpus (ArguAna's)."""
    name, load = next(s for s in evaluation_sets(words, fraction) if s[0].startswith("ArguAna/doc"))
    texts = [text.split() for text in load()[0].to_pylist()]
    return [" ".join(text[:20]) for text in texts if len(text) >= 20][:count]


def rows(words: Words, count: int, plants: list[str], seed: int = 7) -> Iterator[pa.Table]:
    """Training rows in batches: query, positive, negative; planted windows every 500th row
    (their ids end in "-planted")."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, BATCH_ROWS):
        size = min(BATCH_ROWS, count - start)
        query = words.texts(rng, size, 12)
        positive = words.texts(rng, size, 130).to_pylist()
        for row in range(size):
            if (start + row) % PLANT_EVERY == 0:
                plant = plants[((start + row) // PLANT_EVERY) % len(plants)]
                positive[row] = f"{positive[row]} {plant}"
        example = pa.StructArray.from_arrays(
            [query, pa.array(positive), words.texts(rng, size, 130)],
            names=["query", "positive", "negative"],
        )
        ids = pa.array([f"row-{start + i}" + ("-planted" if (start + i) % PLANT_EVERY == 0
                        else "") for i in range(size)])  # fmt: skip
        yield pa.table({"id": ids, "example": example})


def _available_gib() -> float:
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) / 2**20


def _too_large(last: dict[str, Any], fraction: float) -> str | None:
    """Why the next size is not run: its peak memory, the last size's scaled with the texts."""
    expected = last["peak_rss_mib"] / 1024 * fraction / last["fraction"]
    available = _available_gib()
    if expected <= MEMORY_SHARE * available:
        return None
    return (
        f"its peak would be about {expected:.0f} GiB (the last size's, scaled with the texts), "
        f"more than half of the {available:.0f} GiB available on this shared machine"
    )


def _memory_gib() -> float:
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return pages * size / 2**30


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_child(function: Any, *args: Any) -> Any:
    """Run one measurement in a fresh process, so its peak RSS is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def measure_kit(fraction: float, row_count: int) -> dict[str, Any]:
    from kit.decontamination import Contamination, EvaluationNgrams, contaminated_mask

    words = Words()
    spent: list[tuple[float, float]] = []
    started, cpu = time.perf_counter(), time.process_time()
    ngrams = EvaluationNgrams.from_sets(N, evaluation_sets(words, fraction, spent))
    build_s = time.perf_counter() - started - sum(wall for wall, _ in spent)
    build_cpu = time.process_time() - cpu - sum(used for _, used in spent)
    plants = _plants(words, fraction, 64)
    found, flagged, planted_found, checked = Contamination(), 0, 0, 0
    check_s = check_cpu = 0.0
    for table in rows(words, row_count, plants):
        started, cpu = time.perf_counter(), time.process_time()
        mask = contaminated_mask(table, ngrams, found)
        check_s += time.perf_counter() - started
        check_cpu += time.process_time() - cpu
        flagged += int(pc.sum(mask).as_py() or 0)
        planted = pc.ends_with(table["id"], "-planted")
        planted_found += int(pc.sum(pc.and_(mask, planted)).as_py() or 0)
        checked += table.num_rows
    result = {
        "fraction": fraction, "rows": checked, "planted": len(range(0, checked, PLANT_EVERY)),
        "planted_found": planted_found, "flagged": flagged,
        "texts": sum(ngrams.sizes.values()), "grams": ngrams.grams,
        "index_mib": sum(i.nbytes for i in ngrams.index.values()) / 2**20,
        "build_s": build_s, "check_s": check_s, "build_cpu": build_cpu, "check_cpu": check_cpu,
        "peak_rss_mib": _peak_rss_mib(),
    }  # fmt: skip
    return result


def measure_peer(fraction: float, row_count: int) -> dict[str, float]:
    """The plain way: every 13-word tuple of every evaluation text in a Python set, and every
    window of a row looked up in it (same tokenizer; whole short texts left out)."""
    from kit.decontamination import words as tokenize

    words = Words()
    spent: list[tuple[float, float]] = []
    started, cpu = time.perf_counter(), time.process_time()
    grams: set[tuple[str, ...]] = set()
    for _, load in evaluation_sets(words, fraction, spent):
        for array in load():
            for text in tokenize(array).to_pylist():
                grams.update(tuple(text[i : i + N]) for i in range(len(text) - N + 1))
    build_s = time.perf_counter() - started - sum(wall for wall, _ in spent)
    build_cpu = time.process_time() - cpu - sum(used for _, used in spent)
    plants = _plants(words, fraction, 64)
    check_s = check_cpu = 0.0
    flagged = 0
    for table in rows(words, row_count, plants):
        started, cpu = time.perf_counter(), time.process_time()
        hit = np.zeros(table.num_rows, dtype=bool)
        for name in ("query", "positive", "negative"):
            texts = tokenize(pc.struct_field(table["example"], name)).to_pylist()
            for row, text in enumerate(texts):
                hit[row] |= any(tuple(text[i : i + N]) in grams for i in range(len(text) - N + 1))
        flagged += int(hit.sum())
        check_s += time.perf_counter() - started
        check_cpu += time.process_time() - cpu
    return {"build_s": build_s, "check_s": check_s, "build_cpu": build_cpu,
            "check_cpu": check_cpu, "flagged": flagged, "grams": len(grams),
            "peak_rss_mib": _peak_rss_mib()}  # fmt: skip


def table(results: list[dict[str, Any]], peer: dict[str, float], peer_at: dict) -> str:
    lines = [
        "| share of MTEB(eng, v2)'s texts | texts | grams | index (MiB) | index build, CPU "
        "(wall) s | rows | planted rows found | rows flagged | check, CPU (wall) s | "
        "check CPU µs/row | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['fraction']:.4g} | {r['texts']:,} | {r['grams']:,} | {r['index_mib']:.0f} | "
            f"{r['build_cpu']:.1f} ({r['build_s']:.1f}) | {r['rows']:,} | "
            f"{r['planted_found']:,} of {r['planted']:,} | {r['flagged']:,} | "
            f"{r['check_cpu']:.1f} ({r['check_s']:.1f}) | "
            f"{1e6 * r['check_cpu'] / r['rows']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        f"Peer at {peer_at['fraction']:.4g} of the texts and {peer_at['rows']:,} rows (a Python "
        f"set of {peer['grams']:,} 13-word tuples): build {peer['build_cpu']:.1f} s CPU, check "
        f"{peer['check_cpu']:.1f} s CPU ({peer['flagged']:,} rows flagged; it leaves whole "
        f"short texts unchecked), peak RSS {peer['peak_rss_mib']:.0f} MiB. The kit on the same: "
        f"build {peer_at['build_cpu']:.1f} s CPU "
        f"({peer['build_cpu'] / peer_at['build_cpu']:.2f}x the peer's speed), check "
        f"{peer_at['check_cpu']:.1f} s CPU ({peer['check_cpu'] / peer_at['check_cpu']:.2f}x the "
        "peer's speed). CPU seconds are the steadier figure: other work shares the 2 cores.",
    ]
    return "\n".join(lines)


def report(sizes: tuple[tuple[float, int], ...]) -> str:
    sets = text_sets()
    total_texts = sum(s.texts for s in sets)
    total_chars = sum(s.texts * s.mean_chars for s in sets)
    results, failed = [], []
    for fraction, count in sizes:
        if results and (why := _too_large(results[-1], fraction)):
            failed.append(f"{fraction:.4g} of the texts with {count:,} rows was not run: {why}.")
            continue
        try:
            results.append(_in_child(measure_kit, fraction, count))
        except Exception as exc:  # noqa: BLE001 - a size that does not fit is reported
            failed.append(f"{fraction:.4g} of the texts with {count:,} rows did not finish "
                          f"here ({type(exc).__name__}).")
    peer = _in_child(measure_peer, *sizes[0])
    body = [
        "## Decontamination at paper scale",
        "",
        f"MTEB(eng, v2)'s texts cannot be downloaded here, so they are synthesized at the "
        f"benchmark's real sizes from mteb's descriptive statistics (in the package): "
        f"{len(sets)} text statistics of its 41 tasks, {total_texts:,} texts, "
        f"{total_chars / 1e9:.2f} G characters in all, each set at its own mean length, words "
        f"drawn from a {VOCABULARY:,}-word Zipf vocabulary. Rows: a ~12-word query and two "
        f"~130-word documents, every {PLANT_EVERY}th carrying a 20-word window of an evaluation "
        "text. n = 13; rows are checked in batches of 10,000 as the dataset stage reads them. "
        "The rows flagged beyond the planted ones hold a whole short evaluation text (4 to 12 "
        "words, which the gate checks whole): words drawn independently from a Zipf "
        "vocabulary repeat short sequences of frequent words far more often than real text "
        "does, so that count says more about the synthetic text than about the gate. "
        f"Each size runs in a fresh process (peak RSS is its own), on a machine with "
        f"{_memory_gib():.0f} GiB of memory shared with other work.",
        "",
        table(results, peer, results[0]),
        *(["", *failed] if failed else []),
    ]
    return "\n".join(body)


def run(config_path: str) -> str:
    return report(DEFAULT + (FULL if full_run() else ()))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decontamination_bench")
    parser.add_argument("--fractions", nargs="+", type=float, default=[f for f, _ in DEFAULT])
    parser.add_argument("--rows", nargs="+", type=int, default=[r for _, r in DEFAULT])
    args = parser.parse_args()
    print(report(tuple(zip(args.fractions, args.rows, strict=True))))


if __name__ == "__main__":
    main()
