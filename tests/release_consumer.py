"""Use a pushed release from a fresh interpreter, as someone on another machine would.

Run as ``python -m tests.release_consumer REQUEST.json RESULT.json`` with ``HF_ENDPOINT``
pointing at the Hub, an empty ``HF_HOME`` and ``MODEL_ID`` / ``DATASET_ID`` set as on the
Space. The request names the repos, the dataset configs to load, the texts to embed and a
query for the Space; the result holds rows, embeddings, the downloaded Space folder and the
answer of the app launched from it. Connections beyond loopback fail, as in the test process.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from tests.network_guard import guarded


def consume(request: dict) -> dict:
    from datasets import load_dataset
    from huggingface_hub import snapshot_download
    from sentence_transformers import SentenceTransformer

    rows = {
        cfg: {split: ds.to_list() for split, ds in load_dataset(request["dataset"], cfg).items()}
        for cfg in request["configs"]
    }
    model = SentenceTransformer(request["model"])
    space_dir = snapshot_download(request["space"], repo_type="space")
    return {
        "rows": rows,
        "queries": model.encode_query(request["texts"]).tolist(),
        "documents": model.encode_document(request["texts"]).tolist(),
        "space_dir": space_dir,
        "answer": ask_space(Path(space_dir), request["space_query"]),
    }


def ask_space(space_dir: Path, query: str) -> str:
    """Launch the downloaded ``app.py`` (its ``demo``) and call its ``/search`` endpoint."""
    import runpy

    from gradio_client import Client

    app = runpy.run_path(str(space_dir / "app.py"), run_name="space_app")
    app["demo"].launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True)
    try:
        return Client(app["demo"].local_url, verbose=False).predict(query, api_name="/search")
    finally:
        app["demo"].close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(request_path: str, result_path: str) -> None:
    socket.socket.connect = guarded(socket.socket.connect)  # type: ignore[method-assign]
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    Path(result_path).write_text(json.dumps(consume(request)), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
