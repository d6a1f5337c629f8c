"""The real-histories eval's loader (bench/recs_real.py) on a tiny ml-100k folder made here: the
hold-out must be each user's last like in time order, with everything after it unsent, or the
figures it prints would score items the model already saw."""

from __future__ import annotations

from pathlib import Path

from bench.recs_real import load, tuning_half, users_of

# user, movie, stars, time: user 1 likes 10 (t=100), views 11 (2 stars), likes 12 (t=300), rates
# 13 three stars after it; user 2 has a single like, so nothing both to learn from and hold out.
U_DATA = "1\t10\t5\t100\n1\t11\t2\t200\n1\t13\t3\t400\n1\t12\t4\t300\n2\t10\t4\t150\n2\t11\t1\t160\n"
U_ITEM = (
    "10|Heat (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0\n"
    "11|Babe (1995)|01-Jan-1995||http://x|0|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "12|Brazil (1985)|01-Jan-1985||http://x|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0|0\n"
    "13|Fargo (1996)|14-Feb-1997||http://x|0|0|0|0|0|0|1|0|1|0|0|0|0|0|0|0|1|0|0\n"
)


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "u.data").write_text(U_DATA)
    (tmp_path / "u.item").write_text(U_ITEM, encoding="latin-1")
    return tmp_path


def test_loader_orders_by_time_and_names_items_by_title_and_genres(tmp_path: Path) -> None:
    ratings = load(_folder(tmp_path))
    assert [r[3] for r in ratings.rows] == sorted(r[3] for r in ratings.rows)
    assert [d.external_id for d in ratings.items] == ["ml-10", "ml-11", "ml-12", "ml-13"]
    assert ratings.items[0].text == "Heat (1995). Action, Crime, Thriller."
    assert ratings.items[0].genre == "Action"
    assert ratings.items[3].text == "Fargo (1996). Crime, Drama, Thriller."


def test_last_like_is_held_out_with_everything_after_it(tmp_path: Path) -> None:
    ratings = load(_folder(tmp_path))
    users = users_of(ratings)
    assert [u.user_id for u in users] == ["ml-user-1"]  # user 2 has one like only
    (user,) = users
    index = {d.external_id: n for n, d in enumerate(ratings.items)}
    assert user.held_out == index["ml-12"]
    # The two events before the last like are sent; the three-star rating after it is not.
    assert [(e.item, e.rating) for e in user.history] == [(index["ml-10"], 5.0), (index["ml-11"], 2.0)]
    assert tuning_half(user)  # odd user numbers tune, even ones report


def test_with_clicks_the_last_event_is_held_out_and_no_stars_are_sent(tmp_path: Path) -> None:
    ratings = load(_folder(tmp_path))
    users = users_of(ratings, clicks=True)
    assert [u.user_id for u in users] == ["ml-user-1"]  # user 2 has two events only
    (user,) = users
    index = {d.external_id: n for n, d in enumerate(ratings.items)}
    assert user.held_out == index["ml-13"]  # the three-star rating at t=400, the last event
    assert [(e.item, e.rating) for e in user.history] == [
        (index["ml-10"], None),
        (index["ml-11"], None),
        (index["ml-12"], None),
    ]
