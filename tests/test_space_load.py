"""The staged Space under load: 32 gradio_client users at once, run as ``python app.py``.

Each user has its own corpus of documents no other user has and sends a mixed stream of
searches (pasted or uploaded .txt/.jsonl/.csv) and bad inputs (empty query, too many
documents, a file that is not UTF-8, a broken .jsonl). Each search's query copies one of the
user's documents, so with the random tiny model that document must rank first (cosine 1.0)
and every other row must come from the same corpus: an answer computed on another user's
corpus, or a cached embedding served to the wrong corpus, would show. The cache is set to
fewer corpora than there are users, so it must evict, and the server's memory must stay
bounded while it does. Run on both backends (sentence-transformers, and llama.cpp on a
verified GGUF); latency figures go to build/test-artifacts/space-load-<backend>.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.serving_models import build_verified_gguf_repo
from tests.space_helpers import (
    ARTIFACTS_DIR,
    LOAD_LIMITS,
    LOAD_MIX,
    SEARCH_KINDS,
    MixedLoad,
    cache_reports,
    loopback_client,
    percentile,
    rss_samples,
    serve_staged_app,
    stage_test_space,
)

pytestmark = pytest.mark.slow

USERS = 32
REQUESTS_PER_USER = 12
SEND_FOR_S = 30  # no request starts later than this after the users start together
CACHE_CORPORA = 8
# The server's resident memory may grow this much under the load after a warm-up search:
# the load's own data (32 corpora of 10 short documents, 32 client sessions) is a few MB,
# so growth past this would be a leak or an unbounded cache.
RSS_GROWTH_LIMIT = 120 * 2**20


@pytest.fixture(scope="module")
def gguf_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_verified_gguf_repo(tmp_path_factory.mktemp("gguf-repo"))


@pytest.mark.parametrize("backend", ["sentence-transformers", "gguf"])
def test_32_users_at_once_each_get_the_answer_to_their_own_input(
    tmp_path: Path, tiny_st_model_dir: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """On each backend: sentence-transformers on the tiny model, and llama.cpp on a tiny
    model's verified Q8_0 GGUF."""
    space_dir = stage_test_space(tmp_path / "stage")
    model = request.getfixturevalue("gguf_repo") if backend == "gguf" else tiny_st_model_dir
    env = {
        "MODEL_ID": str(model),
        "BACKEND": backend,
        "DATASET_ID": "",
        "CACHE_CORPORA": str(CACHE_CORPORA),
        **{name.upper(): str(value) for name, value in LOAD_LIMITS.items()},
    }
    load = MixedLoad(tmp_path / "load", users=USERS, requests_per_user=REQUESTS_PER_USER)
    with serve_staged_app(space_dir, env, tmp_path / "app.log") as served:
        warm_up = loopback_client(served.url)
        assert load.send(warm_up, load.plans[0][0]).problem is None
        warm_up.close()
        with rss_samples(served) as rss:
            answers, wall_s = load.run(served.url, SEND_FOR_S)
        log = served.log()

    problems = [answer.problem for answer in answers if answer.problem]
    assert not problems, f"{len(problems)} wrong answers, e.g. {problems[:3]}"
    kinds = {answer.request.kind for answer in answers}
    assert kinds == set(LOAD_MIX)
    per_user = {user: 0 for user in load.plans}
    for answer in answers:
        per_user[answer.request.user] += 1
    assert min(per_user.values()) >= 3, per_user
    assert wall_s < SEND_FOR_S + 30

    reports = cache_reports(log)
    assert len(reports) >= USERS
    assert all(r.max_corpora == CACHE_CORPORA and r.corpora <= r.max_corpora for r in reports)
    assert all(r.nbytes <= r.max_bytes for r in reports)
    # Every user's corpus was embedded at least once and only 8 fit: at least 24 evictions.
    assert reports[-1].evictions >= USERS - CACHE_CORPORA
    growth = max(rss) - rss[0]
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.0f} MB"

    searches = [a.latency_ms for a in answers if a.request.kind in SEARCH_KINDS]
    errors = [a.latency_ms for a in answers if a.request.kind not in SEARCH_KINDS]
    figures = {
        "backend": backend,
        "users": USERS,
        "answers": len(answers),
        "wall_s": round(wall_s, 1),
        "answers_per_s": round(len(answers) / wall_s, 1),
        "p50_ms": round(percentile([a.latency_ms for a in answers], 0.5)),
        "p95_ms": round(percentile([a.latency_ms for a in answers], 0.95)),
        "search_p50_ms": round(percentile(searches, 0.5)),
        "search_p95_ms": round(percentile(searches, 0.95)),
        "error_p50_ms": round(percentile(errors, 0.5)),
        "error_p95_ms": round(percentile(errors, 0.95)),
        "rss_start_mb": round(rss[0] / 2**20),
        "rss_peak_mb": round(max(rss) / 2**20),
        "rss_growth_mb": round(growth / 2**20, 1),
        "cache_evictions": reports[-1].evictions,
        "corpora_embedded": len(reports),
    }
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS_DIR / f"space-load-{backend}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nspace load: {figures}")
