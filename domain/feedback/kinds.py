"""What each kind of feedback means: its target and how strongly it says "I like this".

This table is the single source: the profile update (Python) and popularity, co-engagement and
analytics (SQL, through `weight_sql`/`liked_sql`) all read it, so they cannot disagree."""

from __future__ import annotations

from typing import Literal

Kind = Literal["VIEW", "CLICK", "LIKE", "DISLIKE", "RATING", "WATCHED", "ANSWER_HELPFUL", "ANSWER_UNHELPFUL"]
KINDS: tuple[Kind, ...] = (
    "VIEW",
    "CLICK",
    "LIKE",
    "DISLIKE",
    "RATING",
    "WATCHED",
    "ANSWER_HELPFUL",
    "ANSWER_UNHELPFUL",
)
ANSWER_KINDS: frozenset[Kind] = frozenset({"ANSWER_HELPFUL", "ANSWER_UNHELPFUL"})

# Signed strength of each document signal: a like counts five times a view; a dislike pulls away
# as hard as a like pulls toward. RATING maps 0..5 linearly onto -1..+1 (2.5 is neutral).
WEIGHTS: dict[Kind, float] = {"VIEW": 0.2, "CLICK": 0.4, "WATCHED": 0.8, "LIKE": 1.0, "DISLIKE": -1.0}
RATING_NEUTRAL = 2.5
# Rating an answer teaches about each document it cited, more weakly than a like: the user judged
# the answer, not the documents. Kept out of WEIGHTS (and so out of weight_sql): popularity and
# co-engagement count document events only.
ANSWER_WEIGHTS: dict[Kind, float] = {"ANSWER_HELPFUL": 0.3, "ANSWER_UNHELPFUL": -0.3}
# An event this strong counts as "liked" for co-engagement and "because you liked X" reasons:
# LIKE, WATCHED, or a rating of 4 or more.
LIKED_AT = 0.6


def weight(kind: Kind, rating: float | None) -> float:
    if kind == "RATING":
        assert rating is not None
        return (rating - RATING_NEUTRAL) / RATING_NEUTRAL
    return WEIGHTS.get(kind, ANSWER_WEIGHTS.get(kind, 0.0))


def is_liked(kind: Kind, rating: float | None) -> bool:
    return weight(kind, rating) >= LIKED_AT


def weight_sql(alias: str) -> str:
    """The same weights as a SQL expression over a feedback row (constants only, no input)."""
    cases = " ".join(f"WHEN '{k}' THEN {w}" for k, w in WEIGHTS.items())
    return (
        f"(CASE {alias}.kind {cases} "
        f"WHEN 'RATING' THEN ({alias}.rating - {RATING_NEUTRAL}) / {RATING_NEUTRAL} ELSE 0 END)"
    )


def liked_sql(alias: str) -> str:
    return f"({weight_sql(alias)} >= {LIKED_AT})"
