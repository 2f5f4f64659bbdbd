"""Publish staged repos with ``huggingface_hub``: one atomic commit per repo, nothing if unchanged.

Each repo gets a single ``create_commit`` holding every allow-listed file plus deletions of
allow-listed files that are no longer staged (a stale Parquet shard would otherwise join the
dataset). The Hub applies a commit all-or-nothing, and ``create_commit`` drops files whose
remote ``oid`` matches the local one, so an unchanged re-run makes no commit and retrying a
failed commit is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile

from kit.cli import StageError
from kit.retry import call_with_retries
from release.staging import RepoPlan, repo_url

LOG = logging.getLogger("release")
RETRIED_STATUS = (408, 429, 500, 502, 503, 504)
T = TypeVar("T")


@dataclass(frozen=True)
class PushResult:
    kind: str
    repo_id: str
    commit: str
    created_commit: bool
    url: str


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return exc.response.status_code in RETRIED_STATUS
    return isinstance(exc, httpx2.TransportError)


def with_retries(action: Callable[[], T], retries: int, what: str) -> T:
    """Run ``action``, retrying server errors and dropped connections with backoff."""
    return call_with_retries(action, retries, is_transient, what)


def ensure_repo(api: HfApi, plan: RepoPlan, private: bool, retries: int) -> str:
    """Create the repo if missing; return the head commit of ``main``."""
    space_sdk = "gradio" if plan.kind == "space" else None
    with_retries(
        lambda: api.create_repo(
            plan.repo_id, repo_type=plan.kind, private=private, exist_ok=True, space_sdk=space_sdk
        ),
        retries,
        f"creating {plan.kind} repo {plan.repo_id}",
    )
    info = with_retries(
        lambda: api.repo_info(plan.repo_id, repo_type=plan.kind), retries, f"reading {plan.repo_id}"
    )
    if private and not info.private:
        raise StageError(
            f"hub.private is true but {plan.kind} repo {plan.repo_id} exists and is public; "
            "make it private on the Hub or set hub.private = false"
        )
    if info.private and not private:
        LOG.warning(
            "%s repo %s is private; leaving its visibility as it is", plan.kind, plan.repo_id
        )
    return info.sha


def stale_paths(api: HfApi, plan: RepoPlan) -> list[str]:
    """Allow-listed files on the Hub that the staged folder no longer has."""
    staged = {f.path_in_repo for f in plan.files}
    remote = api.list_repo_tree(plan.repo_id, repo_type=plan.kind, recursive=True)
    return sorted(
        entry.path
        for entry in remote
        if isinstance(entry, RepoFile) and entry.path not in staged and plan.is_managed(entry.path)
    )


def commit_repo(api: HfApi, plan: RepoPlan, message: str, description: str, retries: int) -> str:
    """One commit with the staged files; operations are rebuilt for every attempt."""

    def attempt() -> str:
        deletions = [CommitOperationDelete(path) for path in stale_paths(api, plan)]
        additions = [CommitOperationAdd(f.path_in_repo, str(f.local_path)) for f in plan.files]
        info = api.create_commit(
            plan.repo_id,
            [*deletions, *additions],
            repo_type=plan.kind,
            commit_message=message,
            commit_description=description,
        )
        return info.oid

    return with_retries(attempt, retries, f"committing to {plan.repo_id}")


def existing_tags(api: HfApi, plan: RepoPlan) -> dict[str, str]:
    refs = api.list_repo_refs(plan.repo_id, repo_type=plan.kind)
    return {ref.name: ref.target_commit for ref in refs.tags}


def _tag_taken(plan: RepoPlan, tag: str, at: str, commit: str) -> StageError:
    return StageError(
        f"tag {tag!r} already exists on {plan.repo_id} at commit {at[:12]}, "
        f"not at the pushed commit {commit[:12]}: set a new hub.tag"
    )


def check_tag_is_free(api: HfApi, plan: RepoPlan, tag: str, head: str) -> None:
    """Before committing: a tag on an older commit can never be satisfied, so stop early."""
    at = existing_tags(api, plan).get(tag)
    if at is not None and at != head:
        raise _tag_taken(plan, tag, at, head)


def ensure_tag(api: HfApi, plan: RepoPlan, tag: str, commit: str, message: str) -> None:
    """Tag the pushed commit; an existing tag must already point at it (tags never move)."""
    at = existing_tags(api, plan).get(tag)
    if at is not None:
        if at != commit:
            raise _tag_taken(plan, tag, at, commit)
        return
    api.create_tag(plan.repo_id, tag=tag, revision=commit, repo_type=plan.kind, tag_message=message)


def push_repo(
    api: HfApi,
    plan: RepoPlan,
    *,
    private: bool,
    tag: str,
    message: str,
    description: str,
    retries: int,
) -> PushResult:
    head_before = ensure_repo(api, plan, private, retries)
    if tag:
        check_tag_is_free(api, plan, tag, head_before)
    commit = commit_repo(api, plan, message, description, retries)
    if tag:
        ensure_tag(api, plan, tag, commit, message)
    url = repo_url(api.endpoint, plan.kind, plan.repo_id)
    return PushResult(plan.kind, plan.repo_id, commit, commit != head_before, url)
