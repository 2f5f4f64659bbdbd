"""The release stage: push the staged dataset, model and Space, or list them when there is no token.

The token is read from the environment variable named by ``hub.token_env`` and from nowhere
else (not the cached ``huggingface-cli login`` token), so a release never publishes by
surprise. ``HF_ENDPOINT`` selects the Hub, which lets tests use a loopback server.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

import kit
from kit.cli import StageError
from kit.config import Config
from kit.logs import redact
from kit.staleness import StageRun, hub_endpoint
from release.publish import PushResult, push_repo, with_retries
from release.staging import RepoPlan, describe, plan_release

LOG = logging.getLogger("release")


def config_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def commit_text(config: Config, plan: RepoPlan, digest: str) -> tuple[str, str]:
    """Commit title and body: kit version and config hash make every commit traceable."""
    title = f"synthembed {kit.__version__}: {plan.kind} from {config.path.name} ({digest[:12]})"
    body = (
        f"Released by synthembed {kit.__version__} with `make release`.\n\n"
        f"config: {config.path.name} sha256:{digest}\n"
        f"files: {len(plan.files)} from {plan.folder}"
    )
    return title, body


def main(config: Config, args: argparse.Namespace, stage: StageRun) -> None:
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per request otherwise
    stage.begin()
    plans = plan_release(config)
    endpoint = hub_endpoint()
    token = os.environ.get(config.hub.token_env, "").strip()
    listing = describe(plans, endpoint, config.hub.private)
    if not token or args.dry_run:
        reason = "--dry-run" if token else f"no token in ${config.hub.token_env}"
        print(f"Nothing pushed ({reason}). Staged release, as it would be pushed:\n{listing}")
        if not token:
            print(f"To publish: export {config.hub.token_env}=<a Hub write token>; make push")
            stage.publish()
        return
    if constants.is_offline_mode():
        raise StageError(
            "HF_HUB_OFFLINE is set: unset it to push, "
            f"or unset ${config.hub.token_env} to only list the staged release"
        )
    try:
        results = publish(config, plans, token, endpoint)
    except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as exc:
        raise StageError(
            redact(f"push to {endpoint} failed: {exc}", config.hub.token_env)
        ) from None
    for result in results:
        state = "new commit" if result.created_commit else "unchanged, no commit"
        print(f"{result.kind:<8} {result.url} @ {result.commit[:12]} ({state})")
    stage.publish(facts={r.kind: r.commit for r in results})


def publish(config: Config, plans: list[RepoPlan], token: str, endpoint: str) -> list[PushResult]:
    api = HfApi(
        endpoint=endpoint, token=token, library_name="synthembed", library_version=kit.__version__
    )
    check_token(api, config, endpoint)
    digest = config_digest(config.path)
    results = []
    for plan in plans:
        title, body = commit_text(config, plan, digest)
        LOG.info("pushing %s to %s (%d files)", plan.kind, plan.repo_id, len(plan.files))
        results.append(
            push_repo(
                api,
                plan,
                private=config.hub.private,
                tag=config.hub.tag,
                message=title,
                description=body,
                retries=config.hub.commit_retries,
            )
        )
    return results


def check_token(api: HfApi, config: Config, endpoint: str) -> None:
    """Fail before any upload if the token is refused or cannot write to the namespace."""
    env = config.hub.token_env
    try:
        me = with_retries(api.whoami, config.hub.commit_retries, "checking the token")
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code in (401, 403):
            raise StageError(
                f"the Hub at {endpoint} refused the token in ${env} "
                f"(HTTP {exc.response.status_code}): check that it is valid and has write access"
            ) from None
        raise
    writable = [me.get("name"), *(org.get("name") for org in me.get("orgs", []))]
    if config.hub.namespace not in writable:
        raise StageError(
            f"hub.namespace {config.hub.namespace!r} is not the token's user or one of its "
            f"organizations ({', '.join(str(w) for w in writable)}): fix hub.namespace or ${env}"
        )
