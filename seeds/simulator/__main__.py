"""``python -m seeds.simulator``: serve a simulated OpenAI account on 127.0.0.1 until
interrupted; point ``generator.base_url`` at the address it prints to rehearse a run."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import fields
from pathlib import Path

from seeds.simulator.batches import BatchSettings
from seeds.simulator.http import serve_forever
from seeds.simulator.server import Simulator, SimulatorSettings

HELP = {
    "time_scale": "simulated seconds per real second (60: a simulated minute a second)",
    "rpm": "requests per simulated minute (0: no limit)",
    "tpm": "tokens per simulated minute, max_tokens counted at admission (0: no limit)",
    "latency_s": "simulated seconds to answer a chat request",
    "slow_share": "share of chat answers that take slow_latency_s",
    "slow_latency_s": "simulated seconds of a slow answer",
    "error_every": "every N-th request starts a burst of 5xx answers (0: never)",
    "error_burst": "5xx answers in a burst",
    "drop_share": "share of requests handled and then left unanswered (connection closed)",
    "quota_requests": "requests admitted before the account runs out of credit (-1: never)",
    "cut_downloads": "the first N file downloads stop halfway",
    "no_batch_api": "answer like vLLM or llama.cpp: no Files or Batch API",
    "seed": "seed of the answers and faults",
    "batch_max_requests": "Batch API: requests per input file",
    "batch_max_bytes": "Batch API: bytes per input file",
    "batch_enqueued_tokens": "Batch API: prompt tokens of open batches per model (0: no limit)",
    "batch_rpm": "Batch API: requests a batch answers per simulated minute",
    "batch_validate_s": "Batch API: simulated seconds a batch spends validating",
    "batch_finalize_s": "Batch API: simulated seconds a batch spends finalizing",
    "batch_error_share": "Batch API: share of lines answered with a 5xx, into the error file",
    "batch_outcomes": "Batch API: forced ends, batch by batch (completed, failed, expired,"
    " cancelled)",
}


def _options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    for spec in fields(cls):
        if spec.name == "batch":
            continue
        name = prefix + spec.name
        flag = "--" + name.replace("_", "-")
        default = spec.default if not callable(spec.default_factory) else spec.default_factory()
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP[name])
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="*", default=default, help=HELP[name])
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{HELP[name]} (default {default})")  # fmt: skip


def settings_from(args: argparse.Namespace) -> SimulatorSettings:
    values = vars(args)
    batch = BatchSettings(**{f.name: values[f"batch_{f.name}"] for f in fields(BatchSettings)})
    names = [f.name for f in fields(SimulatorSettings) if f.name != "batch"]
    return SimulatorSettings(**{name: values[name] for name in names}, batch=batch)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m seeds.simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where files are kept (default: a temporary folder)")  # fmt: skip
    _options(parser, SimulatorSettings)
    _options(parser, BatchSettings, "batch_")
    args = parser.parse_args()
    simulator = Simulator(settings_from(args), args.data_dir)
    try:
        asyncio.run(serve_forever(simulator.handle, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        simulator.close()


if __name__ == "__main__":
    main()
