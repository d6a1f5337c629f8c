"""The users of `make eval-recs`: a simulation shaped like real rating histories. Pure numpy,
deterministic per seed, no database (unit-tested in tests/test_eval_recs_metrics.py).

- A catalogue of a few thousand items. Each item mixes one to three of `LATENT_FACTORS` latent
  factors (a sparse Dirichlet draw); each factor belongs to one of the `THEMES`, and the item's
  short text is words of its themes plus filler. So the content embedding carries part of the
  taste signal (the theme), and only behaviour carries the rest (which factor within the theme).
- Item popularity follows a power law (Zipf over a random ranking), independent of theme: the
  long tail is where popularity fails and collaborative filtering has to earn its keep.
- A user's taste mixes several factors (a Dirichlet draw, not one genre). Activity is long-tailed
  (log-normal). A user acts in sessions; each session leans on one factor of their mix, so recent
  items say something about the next one.
- Ratings are noisy, 0.5 to 5 in half stars, with a per-user bias; a rating of 4 or more is a like.
  Some items are only viewed.
- Every user's events are in time order and the users are interleaved on one timeline. The last
  liked item of each user is held out, with everything that user did after it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

THEMES: dict[str, tuple[str, ...]] = {
    "Space": ("starship", "orbit", "galaxy", "astronaut", "nebula", "planet", "alien", "comet", "launch", "cosmos"),
    "Romance": ("love", "wedding", "kiss", "heartbreak", "sweetheart", "courtship", "affair", "letters", "waltz"),
    "Crime": ("heist", "detective", "murder", "gangster", "alibi", "smuggler", "robbery", "cartel", "informant"),
    "Horror": ("ghost", "haunted", "demon", "curse", "zombie", "vampire", "cellar", "scream", "ritual", "crypt"),
    "Comedy": ("prank", "wacky", "sitcom", "blunder", "slapstick", "roommate", "hilarious", "farce", "mishap"),
    "War": ("battalion", "trench", "sniper", "invasion", "general", "siege", "bomber", "frontline", "medic"),
    "Western": ("cowboy", "saloon", "sheriff", "outlaw", "ranch", "frontier", "stagecoach", "gunslinger", "desert"),
    "Music": ("band", "concert", "guitar", "singer", "jazz", "orchestra", "album", "tour", "rehearsal", "choir"),
    "Sports": ("coach", "championship", "boxing", "stadium", "underdog", "marathon", "rookie", "league", "trophy"),
    "History": ("empire", "king", "dynasty", "revolution", "medieval", "pharaoh", "castle", "treaty", "queen"),
    "Nature": ("wildlife", "ocean", "forest", "glacier", "whale", "savanna", "volcano", "migration", "reef"),
    "Tech": ("hacker", "robot", "algorithm", "startup", "cyber", "android", "virtual", "drone", "circuit", "code"),
    "Family": ("grandmother", "siblings", "puppy", "holiday", "adoption", "village", "picnic", "twins", "school"),
    "Mystery": ("riddle", "clue", "vanished", "secret", "manor", "cipher", "suspect", "disguise", "puzzle"),
}
FILLER = (
    "story", "journey", "night", "city", "friends", "life", "time", "road", "house", "world", "summer", "stranger",
    "promise", "return", "river", "dream", "winter", "edge", "light", "shadow", "fire", "voice", "hidden", "last",
)  # fmt: skip
TITLE_WORDS = (
    "Silent", "Crimson", "Broken", "Golden", "Lost", "Paper", "Iron", "Hollow", "Velvet", "Distant", "Burning",
    "Quiet", "Wild", "Glass", "Northern", "Electric", "Midnight", "Falling", "Second", "Open",
)  # fmt: skip
TITLE_NOUNS = (
    "Harbor", "Garden", "Signal", "Crown", "Mirror", "Bridge", "Letter", "Engine", "Island", "Station", "Promise",
    "Season", "Lantern", "Valley", "Circle", "Echo", "Tide", "Canyon", "Archive", "Horizon",
)  # fmt: skip

CATALOGUE_ITEMS = 3000
LATENT_FACTORS = 28  # finer than the themes: each factor belongs to one theme (two per theme), and
# only the theme shows in the text, so people's behaviour knows more than the words do
ITEM_CONCENTRATION = 0.1  # Dirichlet alpha over factors: most items are about one or two
POPULARITY_EXPONENT = 0.9  # Zipf: the item ranked r is picked in proportion to 1/r^0.9
USER_CONCENTRATION = 0.15  # Dirichlet alpha: a taste mixes a few factors, one or two leading
ACTIVITY_MEDIAN = 22  # items per user: log-normal, long-tailed
ACTIVITY_SIGMA = 0.8
ACTIVITY_RANGE = (6, 250)
SESSION_RANGE = (3, 10)
TASTE_SHARPNESS = 8.0  # how strongly affinity (0..1) tilts item choice against raw popularity
SESSION_FOCUS = 0.5  # share of a session's affinity that comes from its one focus theme
VIEW_ONLY = 0.15  # share of consumed items that are only viewed, never rated
RATING_MEAN = 3.6
RATING_AFFINITY = 3.0
USER_BIAS_SD = 0.5
RATING_NOISE_SD = 0.8
LIKED_RATING = 4.0


@dataclass(frozen=True)
class Item:
    external_id: str
    title: str
    text: str
    genre: str  # the item's strongest theme: shown in reasons ("popular in Space")


@dataclass(frozen=True)
class Catalogue:
    items: tuple[Item, ...]
    factors: npt.NDArray[np.float64]  # items × latent factors, rows sum to 1
    popularity: npt.NDArray[np.float64]  # sums to 1


@dataclass(frozen=True)
class Interaction:
    item: int  # index into the catalogue
    rating: float | None  # None: only viewed
    at: float  # position on the shared timeline

    @property
    def liked(self) -> bool:
        return self.rating is not None and self.rating >= LIKED_RATING


@dataclass(frozen=True)
class SimUser:
    user_id: str
    history: tuple[Interaction, ...]  # replayed, in time order
    held_out: int  # the last liked item; it and everything after it are never sent


def make_catalogue(n_items: int = CATALOGUE_ITEMS, seed: int = 0) -> Catalogue:
    """The same catalogue for every user seed, so its embeddings can be cached between runs."""
    rng = np.random.default_rng(seed)
    themes = list(THEMES)
    factors = rng.dirichlet(np.full(LATENT_FACTORS, ITEM_CONCENTRATION), size=n_items)
    theme_of_factor = np.arange(LATENT_FACTORS) % len(themes)
    item_themes = np.zeros((n_items, len(themes)))
    np.add.at(item_themes.T, theme_of_factor, factors.T)
    ranks = rng.permutation(n_items) + 1
    popularity = 1.0 / ranks.astype(np.float64) ** POPULARITY_EXPONENT
    popularity /= popularity.sum()
    items = []
    for i in range(n_items):
        # Eight theme words drawn by the item's mix, four neutral ones: content is a noisy view of taste.
        drawn = rng.choice(len(themes), size=8, p=item_themes[i])
        words = [str(rng.choice(THEMES[themes[t]])) for t in drawn]
        words += [str(w) for w in rng.choice(FILLER, size=4)]
        rng.shuffle(words)
        title = f"{rng.choice(TITLE_WORDS)} {rng.choice(TITLE_NOUNS)} {i}"
        genre = themes[int(np.argmax(item_themes[i]))]
        items.append(Item(f"sim-item-{i:05d}", title, f"A {genre.lower()} title: " + " ".join(words) + ".", genre))
    return Catalogue(tuple(items), factors, popularity)


def _rating(rng: np.random.Generator, affinity: float, mean_affinity: float, bias: float) -> float:
    raw = RATING_MEAN + bias + RATING_AFFINITY * (affinity - mean_affinity) + rng.normal(0.0, RATING_NOISE_SD)
    return float(np.clip(np.round(raw * 2) / 2, 0.5, 5.0))


def _simulate_one(
    index: int, seed: int, catalogue: Catalogue, rng: np.random.Generator
) -> tuple[str, list[Interaction]]:
    n_factors = catalogue.factors.shape[1]
    taste = rng.dirichlet(np.full(n_factors, USER_CONCENTRATION))
    affinity = catalogue.factors @ taste
    affinity /= affinity.max()  # 0..1 per item: 1 for the items most to this user's taste
    mean_affinity = float(catalogue.popularity @ affinity)
    bias = float(rng.normal(0.0, USER_BIAS_SD))
    lo, hi = ACTIVITY_RANGE
    n = int(np.clip(rng.lognormal(np.log(ACTIVITY_MEDIAN), ACTIVITY_SIGMA), lo, hi))
    start = float(rng.uniform(0.0, 1.0))
    span = float(rng.uniform(0.05, 1.0))
    available = np.ones(len(catalogue.items), dtype=bool)
    events: list[Interaction] = []
    while len(events) < n:
        focus = int(rng.choice(n_factors, p=taste))
        session = min(int(rng.integers(SESSION_RANGE[0], SESSION_RANGE[1] + 1)), n - len(events))
        lean = (1 - SESSION_FOCUS) * affinity + SESSION_FOCUS * catalogue.factors[:, focus]
        weights = catalogue.popularity * np.exp(TASTE_SHARPNESS * lean) * available
        picks = rng.choice(len(weights), size=session, replace=False, p=weights / weights.sum())
        for item in picks:
            available[item] = False
            rating = None if rng.random() < VIEW_ONLY else _rating(rng, float(affinity[item]), mean_affinity, bias)
            events.append(Interaction(int(item), rating, 0.0))
    times = np.sort(rng.uniform(start, start + span, size=len(events)))
    return f"sim-{seed}-{index}", [Interaction(e.item, e.rating, float(t)) for e, t in zip(events, times, strict=True)]


def simulate_users(catalogue: Catalogue, *, users: int, seed: int) -> list[SimUser]:
    """Users with at least two likes (one to hold out, one to learn from), in index order."""
    rng = np.random.default_rng([seed, 1])
    out: list[SimUser] = []
    for index in range(users):
        user_id, events = _simulate_one(index, seed, catalogue, rng)
        liked = [n for n, e in enumerate(events) if e.liked]
        if len(liked) < 2:
            continue
        cut = liked[-1]
        out.append(SimUser(user_id, tuple(events[:cut]), events[cut].item))
    return out


def timeline(users: list[SimUser]) -> list[tuple[SimUser, int, Interaction]]:
    """Every replayed event of every user in the order of the shared timeline, as they would
    arrive live. The int numbers the event within its user (for idempotency keys)."""
    flat = [(user, n, event) for user in users for n, event in enumerate(user.history)]
    flat.sort(key=lambda t: (t[2].at, t[0].user_id, t[1]))
    return flat


# --- ranking metrics ---

K = 10


def rank_of(target: str, ranked_ids: list[str]) -> int | None:
    """1-based position of `target` in `ranked_ids`, or None when it is absent."""
    for position, doc_id in enumerate(ranked_ids, start=1):
        if doc_id == target:
            return position
    return None


def hit_at(rank: int | None, k: int = K) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def ndcg_at(rank: int | None, k: int = K) -> float:
    """With a single relevant item the ideal DCG is 1, so nDCG is just its discounted gain."""
    return 1.0 / float(np.log2(rank + 1)) if rank is not None and rank <= k else 0.0
