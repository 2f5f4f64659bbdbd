"""Content rules: the degenerate rows that pass every shape check.

A row is rejected when a field is far shorter than the template asked for, when a field is
a JSON or markup fragment or echoes a template placeholder, when a long query is copied
verbatim into its positive, or when a classification label repeats its input. Each rule
names the field it caught, so the counts say where the generator goes wrong.
"""

from __future__ import annotations

import math
import re

from seeds.parsing import Rejection, normalize

# Scripts written without spaces between words: a "word" is counted as 2 characters.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "km", "lo", "my"})
# A fraction of what the template asked for, below which a text is not what was asked.
SHORTFALL = 0.25
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
MARKUP = re.compile(
    r"^\s*[{\[<]"  # starts like JSON or a tag
    r"|```"
    r"|</?[A-Za-z][\w-]*[^<>]*>"  # an HTML/XML tag
    r'|"\w+"\s*:'  # a JSON key
    r"|\b[\w-]+\.(?:json|jsonl|txt|html|xml|py|csv)\b"  # a file name
    r"|\b[a-z]+(?:_[a-z]+){2,}\b",  # a snake_case identifier such as a JSON key echoed back
)
QUERY_COPY_MIN_WORDS = 4
ECHO_MIN_WORDS = 3


def word_count(text: str, language: str | None) -> int:
    if language in NO_SPACE_LANGUAGES:
        return math.ceil(len("".join(text.split())) / 2)
    return len(text.split())


def _asked_words(task_type: str, field: str, placeholders: dict[str, str]) -> int:
    """The fewest words a field may have, from what its prompt asked for."""
    if task_type == "short_long":
        if field == "user_query":
            asked = {"less than 5 words": 1, "5 to 15 words": 5, "at least 10 words": 10}
            return asked.get(placeholders.get("query_length", ""), 1)
        return int(placeholders.get("num_words", "0") or 0)
    if task_type == "long_short":
        if field != "input_text":
            return 1
        number = re.search(r"\d+", placeholders.get("num_words", ""))
        at_least = number and placeholders.get("num_words", "").startswith("at least")
        return int(number.group()) if at_least else 1
    if task_type == "long_long":
        return 50
    if task_type in ("sts", "bitext"):
        return {"phrase": 2, "sentence": 4, "passage": 30}.get(placeholders.get("unit", ""), 1)
    return 1


def check_lengths(
    task_type: str,
    example: dict[str, str],
    placeholders: dict[str, str],
    languages: dict[str, str | None],
) -> None:
    for field, text in example.items():
        asked = _asked_words(task_type, field, placeholders)
        minimum = max(1, math.ceil(SHORTFALL * asked)) if asked > 1 else 1
        if word_count(text, languages.get(field)) < minimum:
            raise Rejection(f"too_short:{field}", f"{word_count(text, languages.get(field))}")


def check_fragments(example: dict[str, str], prompt: str) -> None:
    """JSON or markup debris, placeholders, and the prompt's own words written back."""
    asked = normalize(prompt).casefold()
    for field, text in example.items():
        if PLACEHOLDER.search(text):
            raise Rejection(f"placeholder:{field}", text[:60])
        if MARKUP.search(text):
            raise Rejection(f"markup:{field}", text[:60])
        echo = normalize(text).casefold().strip(" .:;")
        if len(echo.split()) >= ECHO_MIN_WORDS and echo in asked:
            raise Rejection(f"prompt_echo:{field}", text[:60])


def check_copies(task_type: str, example: dict[str, str]) -> None:
    same = {key: normalize(value).casefold() for key, value in example.items()}
    if task_type == "short_long":
        query = same["user_query"]
        if len(query.split()) >= QUERY_COPY_MIN_WORDS and query in same["positive_document"]:
            raise Rejection("query_in_positive")
    labels = (same.get("label"), same.get("misleading_label"))
    if task_type == "long_short" and same["input_text"] in labels:
        raise Rejection("label_equals_input")


def check_content(
    task_type: str,
    example: dict[str, str],
    placeholders: dict[str, str],
    languages: dict[str, str | None],
    prompt: str = "",
) -> None:
    """Raise a ``Rejection`` naming the first content rule the example breaks."""
    check_fragments(example, prompt)
    check_lengths(task_type, example, placeholders, languages)
    check_copies(task_type, example)
