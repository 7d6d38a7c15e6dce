"""Repository.series_buckets, the console's downsampled trends, on every implementation (SQLite and
PostgreSQL, with the fixtures of the repository contract suite): the same buckets, the same
numbers, whatever the storage."""

from __future__ import annotations

from contract.test_repository_contract import GW, repo, store  # noqa: F401 - `repo` is the fixture

from gascore.records import Quality, Reading

T0 = 1_700_000_000_000


def test_buckets_sum_up_numbers_and_count_bad_readings(repo) -> None:  # noqa: F811
    store(
        repo,
        1,
        [
            Reading("d", "p", T0, 1.0),
            Reading("d", "p", T0 + 10, 3),  # an integer
            Reading("d", "p", T0 + 20, True),  # a boolean counts as 1
            Reading("d", "p", T0 + 150, "text"),  # not a number: not in min/max/avg
            Reading("d", "p", T0 + 160, None, Quality.BAD_COMM_FAILURE),
            Reading("d", "p", T0 + 170, -5.5, Quality.BAD_OUT_OF_RANGE),
            Reading("d", "p", T0 + 400, 9.0),  # outside [from, to)
            Reading("d", "other", T0, 100.0),
        ],
    )
    rows = repo.series_buckets(GW, "d", "p", T0, T0 + 400, 100)
    assert rows == [
        {"ts_ms": T0, "min": 1.0, "max": 3.0, "avg": 5 / 3, "count": 3, "bad": 0},
        {"ts_ms": T0 + 100, "min": -5.5, "max": -5.5, "avg": -5.5, "count": 1, "bad": 2},
    ]
    assert repo.series_buckets(GW, "d", "p", T0 + 1000, T0 + 2000, 100) == []
    assert repo.series_buckets(GW, "d", "nope", T0, T0 + 400, 100) == []
