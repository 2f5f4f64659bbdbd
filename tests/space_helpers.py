"""Helpers for the Space tests: a staged Space imported or run as the Space runs it, a local
dataset repo, ports, a many-user load on the app, and a headless Chromium driven by Selenium
(Debian's chromium + chromedriver, nothing downloaded)."""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from kit.processes import stop

if TYPE_CHECKING:
    from gradio_client import Client

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"

DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/default/train-*.parquet
---
A tiny dataset in the release layout, written by the Space tests.
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_local_dataset(folder: Path, positives: Sequence[str]) -> Path:
    """A dataset folder shaped like the release (unified ``default`` config) for DATASET_ID."""
    from datasets import Dataset

    rows = {
        "id": [f"doc-{i}" for i in range(len(positives))],
        "task_type": ["short_long"] * len(positives),
        "task_definition": ["Retrieve documents that answer a question."] * len(positives),
        "language": ["en"] * len(positives),
        "query": [f"question {i}" for i in range(len(positives))],
        "positive": list(positives),
        "negative": [None] * len(positives),
    }
    (folder / "data" / "default").mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows).to_parquet(str(folder / "data" / "default" / "train-00000.parquet"))
    (folder / "README.md").write_text(DATASET_CARD, encoding="utf-8")
    return folder


def stage_test_space(folder: Path, **space: Any) -> Path:
    """Stage the Space as ``python -m space`` does, from a config with these ``[space]`` keys."""
    from kit.config import load_config
    from space.staging import stage_space
    from tests.toml_writer import dump_toml

    folder.mkdir(parents=True, exist_ok=True)
    project = {"runs_dir": str(folder / "runs"), "build_dir": str(folder / "build")}
    config_path = folder / "config.toml"
    config_path.write_text(dump_toml({"project": project, "space": space}), encoding="utf-8")
    space_dir = folder / "build" / "space"
    stage_space(load_config(config_path), space_dir)
    return space_dir


@contextmanager
def imported_space(space_dir: Path) -> Iterator[SimpleNamespace]:
    """Import the staged modules the way ``python app.py`` does (as top-level modules beside
    it), and forget them afterwards so another staged copy can be imported."""
    names = sorted(path.stem for path in space_dir.glob("*.py"))
    clashing = [name for name in names if name in sys.modules]
    if clashing:
        raise RuntimeError(f"modules already imported under the Space's names: {clashing}")
    sys.path.insert(0, str(space_dir))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(name) for name in names})
    finally:
        sys.path.remove(str(space_dir))
        for name in names:
            sys.modules.pop(name, None)


def wait_until_serving(url: str, process: subprocess.Popen, log_path: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"the Space app exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/gradio_api/info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the Space app did not answer at {url} within {limit_s:.0f} s")


def space_environment(env_overrides: dict[str, str], port: int | None = None) -> dict[str, str]:
    """The environment of a staged app run outside the repo: offline, on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        **env_overrides,
    )
    if port is not None:
        env["GRADIO_SERVER_PORT"] = str(port)
    return env


@dataclass(frozen=True)
class ServedApp:
    """A staged app running in its own process."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve_staged_app(
    space_dir: Path, env_overrides: dict[str, str], log_path: Path, limit_s: float = 120
) -> Iterator[ServedApp]:
    """Run ``python app.py`` from the staged folder, as the Space does, outside the repo."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=space_dir,
            env=space_environment(env_overrides, port),
            stdout=log,
            stderr=log,
        )
        try:
            wait_until_serving(url, process, log_path, limit_s)
            yield ServedApp(url, process, log_path)
        finally:
            stop(process)


@contextmanager
def headless_chromium() -> Iterator[object]:
    """A Selenium Chrome driver on Debian's chromium with a fresh profile, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="space-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def keep_artifact(path: Path) -> Path:
    """Copy a test artifact (a screenshot) where CI keeps it: build/test-artifacts/."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS_DIR / path.name
    shutil.copyfile(path, target)
    return target


def loopback_client(url: str) -> Client:
    """A gradio_client for an app on loopback.

    Plain HTTP, so ``ssl_verify=False`` changes no check; it only stops httpx from loading the
    CA bundle for every request (about 40 ms of CPU each), which on 2 cores starves the app
    under test. The 60 s timeout replaces httpx's 5 s: a client that gives up on a slow
    answer leaves its search in the server's queue, and its next search queues beside it.
    """
    from gradio_client import Client

    return Client(
        url,
        verbose=False,
        analytics_enabled=False,
        ssl_verify=False,
        httpx_kwargs={"timeout": 60},
    )


# A many-user load on the app: each user has its own corpus of documents no other user has,
# so an answer drawn from another user's corpus (cross-talk) shows, and each sends a mixed
# stream of searches and bad inputs whose exact message is known.

LOAD_LIMITS = {"max_documents": 12, "max_chars_per_document": 200, "max_total_chars": 2400}
LOAD_CORPUS_SIZE = 10
LOAD_WORDS = (
    "river mountain city ocean history music science weather forest village harbour bridge "
    "library market festival railway island desert glacier valley castle museum garden"
).split()
SEARCH_KINDS = ("paste", "upload.txt", "upload.jsonl", "upload.csv")
# Weights of the request kinds after each user's first three requests.
LOAD_MIX = {
    "paste": 4,
    "upload.txt": 1,
    "upload.jsonl": 1,
    "upload.csv": 1,
    "empty-query": 1,
    "too-many": 1,
    "not-utf8": 1,
    "bad-jsonl": 1,
}
CACHE_LINE = re.compile(r"cache holds (\d+)/(\d+) corpora, (\d+)/(\d+) bytes; (\d+) evicted")
NO_INSTRUCTION = "__none__"


@dataclass(frozen=True)
class LoadRequest:
    user: int
    kind: str
    query: str
    source: str
    pasted: str
    upload: Path | None
    top_k: int
    error: str | None  # the exact message this request must get, or None for results


@dataclass(frozen=True)
class Answer:
    request: LoadRequest
    latency_ms: float
    problem: str | None  # None when the answer is the right one for this request


@dataclass(frozen=True)
class CacheReport:
    """One line the app logs after embedding a corpus."""

    corpora: int
    max_corpora: int
    nbytes: int
    max_bytes: int
    evictions: int


def cache_reports(log: str) -> list[CacheReport]:
    return [CacheReport(*map(int, match.groups())) for match in CACHE_LINE.finditer(log)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p95 is the slowest, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


class MixedLoad:
    """``users`` users, each with a plan of ``requests_per_user`` requests (a search first)."""

    def __init__(
        self, work_dir: Path, users: int = 32, requests_per_user: int = 12, seed: int = 0
    ) -> None:
        self.corpora = self._corpora(users, seed)
        self.plans = {
            user: self._plan(user, work_dir / f"user-{user:02d}", requests_per_user, seed)
            for user in range(users)
        }

    @staticmethod
    def _corpora(users: int, seed: int) -> dict[int, list[str]]:
        """Short documents, unique across users by their "user U note N" prefix."""
        rng = random.Random(seed)
        return {
            user: [
                f"user {user} note {n}: "
                + " ".join(rng.choice(LOAD_WORDS) for _ in range(rng.randint(3, 8)))
                for n in range(LOAD_CORPUS_SIZE)
            ]
            for user in range(users)
        }

    def _plan(self, user: int, folder: Path, count: int, seed: int) -> list[LoadRequest]:
        folder.mkdir(parents=True, exist_ok=True)
        corpus = self.corpora[user]
        files = {
            "upload.txt": ("docs.txt", "\n".join(corpus).encode()),
            "upload.jsonl": (
                "docs.jsonl",
                "\n".join(json.dumps({"text": d}) for d in corpus).encode(),
            ),
            "upload.csv": (
                "docs.csv",
                ("id,text\n" + "".join(f"{i},{d}\n" for i, d in enumerate(corpus))).encode(),
            ),
            "not-utf8": ("latin1.txt", f"résumé of user {user}\n".encode("latin-1")),
            "bad-jsonl": ("broken.jsonl", b'{"text": "fine"}\n{"text": '),
        }
        paths = {}
        for kind, (name, data) in files.items():
            paths[kind] = folder / name
            paths[kind].write_bytes(data)
        too_many = LOAD_LIMITS["max_documents"] + 1
        errors = {
            "empty-query": "Type a query first.",
            "too-many": (
                f"The corpus has {too_many} documents; this Space accepts at most "
                f"{LOAD_LIMITS['max_documents']}."
            ),
            "not-utf8": (
                "The file is not UTF-8 text (byte 0xe9 at position 1). "
                "Save it as UTF-8 and upload it again."
            ),
            "bad-jsonl": "Line 2 of the .jsonl file is not valid JSON.",
        }
        rng = random.Random(seed * 100_003 + user)
        # A search, then one bad input and one upload in turn across users, so that a few
        # requests per user already cover every kind; the rest follow the mix.
        error_kinds = [kind for kind in LOAD_MIX if kind not in SEARCH_KINDS]
        upload_kinds = [kind for kind in SEARCH_KINDS if kind.startswith("upload")]
        first = [
            "paste",
            error_kinds[user % len(error_kinds)],
            upload_kinds[user % len(upload_kinds)],
        ]
        rest = rng.choices(list(LOAD_MIX), weights=list(LOAD_MIX.values()), k=count)
        kinds = (first + rest)[:count]
        plan = []
        for kind in kinds:
            pasted = "\n".join(corpus)
            if kind == "too-many":
                pasted = "\n".join(
                    [*corpus, *(f"extra {i} of user {user}" for i in range(too_many - len(corpus)))]
                )
            plan.append(
                LoadRequest(
                    user=user,
                    kind=kind,
                    query="   " if kind == "empty-query" else rng.choice(corpus),
                    source="upload" if kind in paths else "paste",
                    pasted=pasted,
                    upload=paths.get(kind),
                    top_k=rng.randint(1, 8),
                    error=errors.get(kind),
                )
            )
        return plan

    def check(self, request: LoadRequest, outcome: object) -> str | None:
        """Why ``outcome`` (results or an exception) is wrong for this request, or None."""
        from gradio_client.exceptions import AppError

        if isinstance(outcome, AppError):
            if outcome.message == request.error:
                return None
            return f"{request.kind}: message {outcome.message!r}, expected {request.error!r}"
        if isinstance(outcome, BaseException):
            return f"{request.kind}: {type(outcome).__name__}: {outcome}"
        if request.error is not None:
            return f"{request.kind}: results instead of {request.error!r}"
        table, _chart, status = outcome  # type: ignore[misc]
        rows = table["data"]
        corpus = self.corpora[request.user]
        shown = min(request.top_k, len(corpus))
        scores = [row[1] for row in rows]
        checks = {
            "ranks": [row[0] for row in rows] == list(range(1, shown + 1)),
            "exact copy first": bool(rows) and rows[0][2] == request.query,
            "cosine 1.0 first": bool(rows) and abs(rows[0][1] - 1.0) < 1e-3,
            "only this user's documents": all(row[2] in corpus for row in rows),
            "scores descending": scores == sorted(scores, reverse=True),
            "status": status.startswith(f"Top {shown} of {len(corpus)} documents"),
        }
        failed = [name for name, ok in checks.items() if not ok]
        return f"{request.kind}: {', '.join(failed)} wrong in {rows}" if failed else None

    def send(self, client: Client, request: LoadRequest) -> Answer:
        """Send one request and check its answer."""
        from gradio_client import handle_file

        started = time.perf_counter()
        try:
            outcome: object = client.predict(
                request.query,
                NO_INSTRUCTION,
                "",
                request.top_k,
                request.source,
                request.pasted,
                handle_file(str(request.upload)) if request.upload else None,
                api_name="/search",
            )
        except Exception as exc:  # checked against the request below
            outcome = exc
        latency_ms = (time.perf_counter() - started) * 1000
        return Answer(request, latency_ms, self.check(request, outcome))

    def run(self, url: str, deadline_s: float) -> tuple[list[Answer], float]:
        """Every user at once, each with its own client; stop sending at the deadline.
        Returns the answers and the wall-clock seconds from the first request to the last."""
        answers: list[Answer] = []
        ready = threading.Barrier(len(self.plans) + 1)
        failures: list[BaseException] = []

        def user(plan: list[LoadRequest]) -> None:
            try:
                client = loopback_client(url)
            except BaseException as exc:
                failures.append(exc)
                ready.abort()
                raise
            try:
                ready.wait()
                stop_at = time.monotonic() + deadline_s
                for request in plan:
                    if time.monotonic() > stop_at:
                        break
                    answers.append(self.send(client, request))
            finally:
                client.close()

        threads = [threading.Thread(target=user, args=(plan,)) for plan in self.plans.values()]
        for thread in threads:
            thread.start()
        try:
            ready.wait(timeout=120)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"a load client could not connect: {failures!r}") from None
        started = time.monotonic()
        for thread in threads:
            thread.join()
        return answers, time.monotonic() - started

    def run_sequential(self, url: str, deadline_s: float) -> tuple[list[Answer], float]:
        """The same requests, in turn from one client (the users' plans interleaved)."""
        client = loopback_client(url)
        answers = []
        started = time.monotonic()
        try:
            for step in zip(*self.plans.values(), strict=True):
                for request in step:
                    if time.monotonic() - started > deadline_s:
                        return answers, time.monotonic() - started
                    answers.append(self.send(client, request))
        finally:
            client.close()
        return answers, time.monotonic() - started


@contextmanager
def rss_samples(app: ServedApp, every_s: float = 0.2) -> Iterator[list[int]]:
    """The server's resident memory, sampled while the block runs (first and last included)."""
    samples = [app.rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            samples.append(app.rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append(app.rss_bytes())
