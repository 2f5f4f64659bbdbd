"""Benchmark: how often the LLM judge agrees with hand labels, against a word-overlap judge.

The labelled set is ``tests/fixtures/judge_labelled.jsonl`` (24 rows written for the kit:
a text, the candidate that fits it and one that does not). Each row is asked twice, with
the fitting candidate shown first and then second, through the kit's own judge prompt and
reader, so a judge that always answers "A" scores 50%. The judge is the bundled
SmolLM2-135M-Instruct behind the kit's llama.cpp server, as the embedded default would use
it; the peer is a judge that picks the candidate sharing more words with the text.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from seeds.judge import load_judge_prompt
from seeds.local_server import BUNDLED_GENERATOR, llama_server, resolve_gguf
from seeds.parsing import Rejection, extract_json_object

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "judge_labelled.jsonl"


def labelled_rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]


def overlap_prefers_first(text: str, first: str, second: str) -> bool:
    """The peer: the candidate sharing more distinct words with the text (ties: the first)."""

    def words(value: str) -> set[str]:
        return set(re.findall(r"\w+", value.lower()))

    anchor = words(text)
    return len(anchor & words(first)) >= len(anchor & words(second))


def ask(client: object, prompt: str, schema: dict) -> str | None:
    """The judge's answer, "A" or "B", or None when it gave no readable one."""
    response = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": prompt}],
        temperature=0.0,
        max_tokens=16,
        response_format={"type": "json_object", "schema": schema},
    )
    try:
        better = extract_json_object(response.choices[0].message.content or "").get("better")
    except Rejection:
        return None
    return better if better in ("A", "B") else None


def verdict(agreement: dict[str, float], first_answers: int, asked: int) -> str:
    """What the figures say about using this judge."""
    if abs(first_answers / asked - 0.5) > 0.4:
        return (
            f"The judge answered by position ({first_answers} of {asked} answers A), so its "
            "agreement says nothing about the rows: it stays off in the embedded default and "
            "is meant for a real endpoint's model."
        )
    if agreement["judge"] <= agreement["peer"]:
        return "The judge does no better than word overlap here."
    return "The judge agrees with the labels more often than word overlap does."


def run(config_path: str) -> str:
    """The Markdown section; ``config_path`` is unused (the judge is the bundled model)."""
    import openai

    prompt = load_judge_prompt()
    rows = labelled_rows()
    judged = {"judge": [], "peer": []}
    unreadable = 0
    first_answers = 0
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as root,
        llama_server(
            resolve_gguf(BUNDLED_GENERATOR), 2048, 1, 120, Path(root) / "server.log"
        ) as url,
    ):
        client = openai.OpenAI(base_url=url, api_key="local")
        for row in rows:
            for positive_shown_first in (True, False):
                first, second = (row["positive"], row["negative"])
                if not positive_shown_first:
                    first, second = second, first
                text = prompt.text.format(
                    task=row["task"], anchor=row["text"], first=first, second=second
                )
                answer = ask(client, text, prompt.schema)
                unreadable += answer is None
                first_answers += answer == "A"
                judged["judge"].append(
                    (answer == "A") == positive_shown_first and answer is not None
                )
                judged["peer"].append(
                    overlap_prefers_first(row["text"], first, second) == positive_shown_first
                )
    asked = len(judged["judge"])
    wall = time.monotonic() - started
    agreement = {name: sum(hits) / asked for name, hits in judged.items()}
    both = sum(judged["judge"][i] and judged["judge"][i + 1] for i in range(0, asked, 2))
    lines = [
        "## LLM judge: agreement with hand labels",
        "",
        f"{len(rows)} hand-labelled rows (`tests/fixtures/judge_labelled.jsonl`: short-long, "
        "long-short, STS and bitext), each asked twice with the fitting candidate shown as A "
        "and then as B, through the kit's judge prompt (`seeds/prompts/judge.json`). Judge: "
        "the bundled SmolLM2-135M-Instruct on the kit's llama.cpp server, temperature 0. "
        "Peer: the candidate sharing more words with the text.",
        "",
        "| judge | agreement with the labels | right in both orders | unreadable answers |"
        " answered A |",
        "|---|---|---|---|---|",
        f"| SmolLM2-135M-Instruct (kit judge) | {agreement['judge']:.1%} | {both} of "
        f"{len(rows)} | {unreadable} of {asked} | {first_answers} of {asked} |",
        f"| word overlap (peer) | {agreement['peer']:.1%} | | | |",
        "",
        f"Wall time {wall:.0f} s for {asked} questions. {verdict(agreement, first_answers, asked)}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(""))
