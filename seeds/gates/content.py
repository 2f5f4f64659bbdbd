"""Content rules: the degenerate rows that pass every shape check.

A row is rejected when a field is far shorter than the template asked for, when a field is
a JSON or markup fragment or echoes a template placeholder, or when it breaks one of its task
type's gated rules (``kit.schema.TASK_TABLE``: a long query copied verbatim into its
positive, a classification label repeating its input). Each field rule names the field it
caught, so the counts say where the generator goes wrong.
"""

from __future__ import annotations

import math
import re

from kit.schema import TaskType
from seeds.parsing import Rejection, check_repeats, normalize

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
ECHO_MIN_WORDS = 3


def word_count(text: str, language: str | None) -> int:
    if language in NO_SPACE_LANGUAGES:
        return math.ceil(len("".join(text.split())) / 2)
    return len(text.split())


def check_lengths(
    example: dict[str, str], asked: dict[str, int], languages: dict[str, str | None]
) -> None:
    """A field far shorter than the words its prompt asked for (``Template.asked_words``)."""
    for field, text in example.items():
        words = asked.get(field, 1)
        minimum = max(1, math.ceil(SHORTFALL * words)) if words > 1 else 1
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


def check_content(
    task: TaskType,
    example: dict[str, str],
    asked: dict[str, int],
    languages: dict[str, str | None],
    prompt: str = "",
    given: tuple[str, ...] = (),
) -> None:
    """Raise a ``Rejection`` naming the first content rule the example breaks; the ``given``
    fields (a corpus's text) are checked only as what the others must not repeat."""
    written = {field: text for field, text in example.items() if field not in given}
    check_fragments(written, prompt)
    check_lengths(written, asked, languages)
    check_repeats(task, example, gated=True)
