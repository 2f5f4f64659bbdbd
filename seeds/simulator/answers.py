"""What the simulated model writes, and how the API counts its tokens.

An answer is a JSON object with the keys the request asks for (its json_schema, or the
``- "key":`` lines of a text prompt). Each text is put together from real sentences of a
fixed pool (``pool.json.gz``, Tatoeba sentences in 75 of the kit's languages, see POOL.md)
in the language the prompt names, as long as the prompt asks, so that the kit's shape and
quality gates accept most answers. A prompt in a language the pool lacks is answered in
English, as a weak model would. Brainstorms get task descriptions, the judge a verdict.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

from seeds.languages import XLMR_LANGUAGES

POOL_FILE = Path(__file__).with_name("pool.json.gz")
PROMPT_KEY = re.compile(r'^- "(\w+)":(.*)$', re.MULTILINE)
# The document a corpus-grounded prompt carries, and the fields that should lead back to it.
GROUNDED_DOCUMENT = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)
LEADS_BACK = ("user_query", "input", "S2")
ASKED_WORDS = re.compile(r"(?:about|at least|of) (\d+) words")
# Longest names first, so "Malayalam" is not read as "Malay".
LANGUAGE_NAMES = re.compile(
    r"\b("
    + "|".join(sorted(map(re.escape, XLMR_LANGUAGES.values()), key=len, reverse=True))
    + r")\b"
)
CODE_OF = {name: code for code, name in XLMR_LANGUAGES.items()}
DEFAULT_MAX_TOKENS = 4096
TOPICS = (
    "household budgets", "river ecology", "medieval trade", "bicycle repair", "tax law",
    "vaccines", "jazz history", "soil erosion", "startup funding", "chess openings",
    "urban gardening", "railway timetables", "sleep research", "coral reefs", "copyright",
    "volcanoes", "baking bread", "labour unions", "exoplanets", "dog training",
    "public libraries", "wind turbines", "ancient Rome", "food allergies", "board games",
    "insurance claims", "glaciers", "poetry translation", "e-commerce returns", "beekeeping",
)  # fmt: skip
ASKS = (
    "a short question", "a keyword query", "a product review", "a news headline",
    "a customer complaint", "a forum post", "a symptom description", "a how-to request",
)  # fmt: skip
FINDS = (
    "encyclopedia passages", "expert answers", "official guidance", "product pages",
    "research abstracts", "tutorial steps", "news reports", "community answers",
)  # fmt: skip
READERS = ("a student", "a journalist", "a beginner", "a specialist", "a parent", "a traveller")


@cache
def sentence_pool() -> dict[str, tuple[str, ...]]:
    """Language code -> sentences (loaded once per process)."""
    raw = json.loads(gzip.decompress(POOL_FILE.read_bytes()))
    return {code: tuple(sentences) for code, sentences in raw.items()}


def count_tokens(text: str) -> int:
    """Tokens of a text, as a BPE tokenizer roughly counts them (4 bytes a token)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def prompt_tokens(body: dict[str, Any]) -> int:
    """``usage.prompt_tokens``: every message's text plus the chat format's framing (3 tokens
    a message and 3 to start the reply), and the schema when one is sent."""
    messages = body.get("messages") or []
    total = 3 + sum(count_tokens(str(m.get("content", ""))) + 3 for m in messages)
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    return total + (count_tokens(json.dumps(schema)) if schema else 0)


def admission_tokens(body: dict[str, Any]) -> int:
    """What a request costs against TPM when it is admitted: the larger of its ``max_tokens``
    and an estimate from the characters of its messages (OpenAI's documented rule)."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    characters = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [])
    return max(int(limit), math.ceil(characters / 4))


def _words(sentence: str) -> int:
    """Words of a sentence; scripts written without spaces count a word per 2 characters."""
    return len(sentence.split()) if " " in sentence else math.ceil(len(sentence) / 2)


def _asked_keys(body: dict[str, Any], prompt: str) -> dict[str, str]:
    """Requested key -> the prompt's line about it (empty when only the schema names it)."""
    lines = dict(PROMPT_KEY.findall(prompt))
    response_format = body.get("response_format") or {}
    schema = response_format.get("schema") or (response_format.get("json_schema") or {}).get(
        "schema"
    )
    keys = list(schema["required"]) if schema and schema.get("required") else list(lines)
    return {key: lines.get(key, "") for key in keys}


class Writer:
    """Writes answers; one per simulator, seeded, so a run can be repeated."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = sentence_pool()
        self.number = 0

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion object; an answer longer than ``max_tokens`` is cut there and
        ends with ``finish_reason = "length"``, as the real API does."""
        text = self.answer(body)
        limit = int(
            body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
        )
        tokens, finish = count_tokens(text), "stop"
        if tokens > limit:
            text = text.encode("utf-8")[: 4 * limit].decode("utf-8", errors="ignore")
            tokens, finish = limit, "length"
        prompt = prompt_tokens(body)
        self.number += 1
        return {
            "id": f"chatcmpl-{self.number}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "simulated"),
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": tokens,
                      "total_tokens": prompt + tokens},
        }  # fmt: skip

    def answer(self, body: dict[str, Any]) -> str:
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
        keys = _asked_keys(body, prompt)
        if list(keys) == ["tasks"]:
            asked = re.search(r"(\d+)", prompt)
            return json.dumps({"tasks": self._tasks(int(asked.group(1)) if asked else 20)})
        if list(keys) == ["better"]:
            return json.dumps({"better": self.rng.choice("AB")})
        document = GROUNDED_DOCUMENT.search(prompt)
        if document is not None:  # a corpus prompt: its document is not the instructions
            prompt = prompt.replace(document.group(0), "")
        named = [CODE_OF[name] for name in LANGUAGE_NAMES.findall(prompt)]
        used: set[str] = set()
        fields = {}
        for key, line in keys.items():
            in_line = [CODE_OF[name] for name in LANGUAGE_NAMES.findall(line)]
            language = (in_line or named or ["en"])[0]
            fields[key] = self._text(key, line, prompt, language, used)
            if document is not None and key in LEADS_BACK:
                fields[key] = f"{self._about(document.group(1))} {fields[key]}"
        return json.dumps(fields, ensure_ascii=False)

    def _about(self, document: str) -> str:
        """Some words of the document, not four in a row: a grounded query names what its
        document is about, as a real model's does."""
        words = document.split()
        start = self.rng.randrange(max(1, len(words) - 16))
        return " ".join(words[start : start + 16 : 2])

    def _tasks(self, count: int) -> list[str]:
        pick = self.rng.choice
        return [
            f"Given {pick(ASKS)} about {pick(TOPICS)}, find {pick(FINDS)} that help "
            f"{pick(READERS)}."
            for _ in range(count)
        ]

    def _text(self, key: str, line: str, prompt: str, language: str, used: set[str]) -> str:
        sentences = self.pool.get(language) or self.pool["en"]
        if "label" in key:
            return " ".join(self._draw(sentences, used).split()[:2])[:24]
        target = 0
        if "passage" in line:
            target = 40
        elif "query" not in key and not any(
            word in line for word in ("short", "phrase", "sentence", "less than")
        ):
            asked = ASKED_WORDS.findall(line) or ASKED_WORDS.findall(prompt)
            target = max(map(int, asked)) if asked else 80
        parts = [self._draw(sentences, used)]
        words = _words(parts[0])
        while words < target and len(used) < len(sentences):
            parts.append(self._draw(sentences, used))
            words += _words(parts[-1])
        return " ".join(parts)

    def _draw(self, sentences: tuple[str, ...], used: set[str]) -> str:
        """A sentence not used yet in this answer (texts of one answer never repeat one)."""
        while True:
            sentence = self.rng.choice(sentences)
            if sentence not in used or len(used) >= len(sentences):
                used.add(sentence)
                return sentence
