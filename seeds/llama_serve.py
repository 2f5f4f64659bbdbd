"""``python -m seeds.llama_serve``: llama.cpp's own OpenAI-compatible server on loopback.

xllamacpp ships llama.cpp's C++ server as a prebuilt wheel, so a first ``make release``
installs it in seconds instead of compiling llama-cpp-python for minutes. The server runs in
this process's background threads until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading


def serve(model: str, port: int, context: int, threads: int, parallel: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_parallel = parallel  # slots decoded together, each with ``context`` tokens
    params.n_ctx = context * parallel
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    stop.wait()
    del server
    print("server stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m seeds.llama_serve")
    parser.add_argument("--model", required=True, help="a .gguf file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n_ctx", type=int, default=2048)
    parser.add_argument("--n_threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    serve(args.model, args.port, args.n_ctx, args.n_threads, args.parallel)


if __name__ == "__main__":
    main()
