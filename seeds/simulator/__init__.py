"""A limits-faithful OpenAI-compatible endpoint, for tests, benchmarks and rehearsing a run.

It enforces what OpenAI documents and the kit must live with: requests- and
tokens-per-minute limits with ``max_tokens`` counted at admission and the ``x-ratelimit-*``
headers; 429 answers with ``retry-after``, and ``insufficient_quota`` when the account's
credit is gone; bursts of 5xx, dropped connections and slow answers; the Batch API with its
file limits (50,000 requests, 200 MB), an enqueued-token limit per model, every batch state,
partial results with an error file, and output files streamed from disk. Its answers are
valid rows made of real sentences (``answers``), so the kit's gates accept most of them.

A time scale compresses the clock: at ``time_scale = 60`` a simulated minute passes in one
real second (limits refill, answers and batches finish 60 times faster).

    python -m seeds.simulator --rpm 500 --tpm 200000 --time-scale 60
"""

from __future__ import annotations

from pathlib import Path

from seeds.simulator.batches import BatchSettings
from seeds.simulator.http import ServerThread
from seeds.simulator.server import Simulator, SimulatorSettings

__all__ = ["BatchSettings", "RunningSimulator", "Simulator", "SimulatorSettings"]


class RunningSimulator(ServerThread):
    """A simulator served on 127.0.0.1 from a background thread: ``url`` is its base URL,
    ``simulator`` its state (read it once the client is done)."""

    def __init__(
        self, settings: SimulatorSettings, data_dir: Path | None = None, port: int = 0
    ) -> None:
        self.simulator = Simulator(settings, data_dir)
        super().__init__(self.simulator.handle, port)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.simulator.close()
