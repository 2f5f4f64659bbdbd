"""The XLM-R language list and the paper's language mix (English-heavy, then a dozen
high-resource languages, then a long tail)."""

from __future__ import annotations

import random

# ISO 639-1 code -> English name, for the 100 XLM-R languages with romanized and
# alternate-script duplicates folded into one code each (93 languages).
XLMR_LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "br": "Breton", "bs": "Bosnian",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "fy": "Western Frisian",
    "ga": "Irish", "gd": "Scottish Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jv": "Javanese",
    "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean",
    "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "no": "Norwegian", "om": "Oromo", "or": "Odia", "pa": "Punjabi", "pl": "Polish",
    "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit",
    "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "ug": "Uyghur", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese",
    "xh": "Xhosa", "yi": "Yiddish", "zh": "Chinese",
}  # fmt: skip

ENGLISH_SHARE = 0.431
HIGH_RESOURCE = ("pl", "ja", "it", "ru", "id", "de", "fa", "es", "zh", "fr", "pt", "nl", "ar")
TAIL_SHARE = 0.20


def language_weights(mode: str = "xlmr") -> dict[str, float]:
    """Sampling weights summing to 1: English 43.1%, 13 languages ~2.8% each, the rest 20%."""
    if mode == "english":
        return {"en": 1.0}
    high_share = (1.0 - ENGLISH_SHARE - TAIL_SHARE) / len(HIGH_RESOURCE)
    tail = [code for code in XLMR_LANGUAGES if code != "en" and code not in HIGH_RESOURCE]
    weights = {"en": ENGLISH_SHARE}
    weights.update({code: high_share for code in HIGH_RESOURCE})
    weights.update({code: TAIL_SHARE / len(tail) for code in tail})
    return weights


class LanguageSampler:
    """Draws languages from the mix; bitext targets are drawn from the same languages (all of
    XLM-R unless a subset is given), never the source."""

    def __init__(self, mode: str, subset: list[str] | tuple[str, ...] = ()) -> None:
        unknown = sorted(set(subset) - set(XLMR_LANGUAGES))
        if unknown:
            raise ValueError(f"not an XLM-R language code: {unknown[0]!r}")
        self._weights = _restricted(language_weights(mode), subset)
        self._codes = list(self._weights)
        self._values = list(self._weights.values())
        self._all = _restricted(language_weights("xlmr"), subset)

    def language(self, rng: random.Random) -> str:
        return rng.choices(self._codes, weights=self._values)[0]

    def pair(self, rng: random.Random) -> tuple[str, str]:
        source = self.language(rng)
        others = [code for code in self._all if code != source]
        target = rng.choices(others, weights=[self._all[c] for c in others])[0]
        return source, target


def _restricted(weights: dict[str, float], subset: list[str] | tuple[str, ...]) -> dict[str, float]:
    if not subset:
        return weights
    kept = {code: weight for code, weight in weights.items() if code in subset}
    total = sum(kept.values())
    return {code: weight / total for code, weight in kept.items()}


def language_name(code: str) -> str:
    return XLMR_LANGUAGES[code]
