"""Band and task of an imported record when the record does not say (docs/import.md, "Band", "Task").

Keyword rules over lower-case letter tokens of the source name, file name and
image path (band), and over the answer's format and the question's words
(task). Conflicting matches at the deciding level give `unknown` (band) or a
reject (`ambiguous task`): never a guess.
"""

from __future__ import annotations

import re

from irgpt.data.readers import RecordRejected

# ------------------------------------------------------------------ band ----
# Keyword phrases (lower-case letter tokens) -> band. Sensor words outrank
# data-set names, so `LLVIP/visible/...` is vis and `LLVIP/infrared/...` lwir.
# Conflicting matches at the deciding level give `unknown`: never a guess.
BAND_SENSOR_WORDS = {
    "nir": ("nir", "near infrared", "nearinfrared"),
    "swir": ("swir", "short wave", "shortwave"),
    "mwir": ("mwir", "mid wave", "midwave"),
    "lwir": ("lwir", "long wave", "longwave", "thermal", "tir"),
    "vis": ("rgb", "visible", "vis"),
}
BAND_DATASET_NAMES = {
    "lwir": ("flir", "llvip", "kaist"),  # all three are thermal (LWIR) camera data sets
}


def _tokens(*texts: str) -> list[str]:
    return [t for text in texts for t in re.findall(r"[a-z]+", text.lower())]


def _has_phrase(tokens: list[str], phrase: str) -> bool:
    words = phrase.split()
    n = len(words)
    return any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1))


def infer_band(*texts: str) -> str:
    """Band from the keyword tables over the tokens of `texts` (source name, paths)."""
    tokens = _tokens(*texts)
    for table in (BAND_SENSOR_WORDS, BAND_DATASET_NAMES):
        found = {
            band for band, phrases in table.items() if any(_has_phrase(tokens, p) for p in phrases)
        }
        if len(found) == 1:
            return found.pop()
        if found:
            return "unknown"
    return "unknown"


# ------------------------------------------------------------------ task ----
# Question keywords (whole lower-case letter tokens; phrases = consecutive tokens).
VEHICLE_WORDS = frozenset(
    "aerial vehicle vehicles car cars truck trucks bus buses van vans drone uav overhead".split()
)
PEOPLE_WORDS = frozenset(
    "person persons people pedestrian pedestrians crowd crowds human humans".split()
)
REID_PHRASES = (
    "grid",
    "numbered",
    "top left",
    "upper left",
    "same person",
    "reid",
    "re identification",
)
SECURITY_WORDS = frozenset("not absent missing without".split())
SCENE_WORDS = frozenset("scene scenes environment place setting where".split())
RECOGNITION_WORDS = frozenset(
    "object objects category categories class present recognize recognise contain contains "
    "target targets thing things".split()
)
_OPTIONS = re.compile(r"\s*(\([A-H]\)[^()]*)+")


def infer_task(question: str, answer: str) -> str:
    """A task from the first question/answer pair (rules in docs/import.md)."""
    a = answer.strip()
    words = set(_tokens(question))
    if re.search(r"<num>\s*\d+\s*</num>", a):
        vehicles, people = bool(words & VEHICLE_WORDS), bool(words & PEOPLE_WORDS)
        if vehicles != people:
            return "aerial_counting" if vehicles else "pedestrian_counting"
        raise RecordRejected(
            "ambiguous task",
            "a <num> count, but the question names "
            + ("both vehicles and people" if vehicles else "neither vehicles nor people"),
        )
    if "<box>" in a:
        return "grounding"
    if "<pos>" in a:
        return "location"
    if re.fullmatch(r"(yes|no)[.!]?", a.lower()):
        return "relationship"
    if re.fullmatch(r"[1-8]\.?", a) and any(
        _has_phrase(_tokens(question), p) for p in REID_PHRASES
    ):
        return "reid"
    if _OPTIONS.fullmatch(a):
        if len(re.findall(r"\([A-H]\)", a)) > 1 or words & SECURITY_WORDS:
            return "security"
        if words & SCENE_WORDS:
            return "scene"
        if words & RECOGNITION_WORDS:
            return "recognition"
        raise RecordRejected(
            "ambiguous task", "an option answer, but the question has no scene or object keyword"
        )
    return "caption"
