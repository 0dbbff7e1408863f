"""The benchmark code keeps working: the harness, the report's plumbing, and one tiny part run
end to end in its own process. No timing is asserted: only shapes and bookkeeping."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import common, run, sections
from bench.common import ROOT


def test_interleaved_runs_every_side_once_per_round_in_shuffled_orders():
    """Each side runs once a round, the order changes between rounds, and rates are items/s."""
    calls: list[str] = []

    def side(name: str, seconds: float, items: int):
        def go():
            calls.append(name)
            return seconds, items

        return go

    sides = {"a": side("a", 2.0, 10), "b": side("b", 1.0, 10), "c": side("c", 0.5, 1)}
    rates = common.interleaved(sides, rounds=8, seed=3)
    assert rates == {"a": [5.0] * 8, "b": [10.0] * 8, "c": [2.0] * 8}
    orders = [tuple(calls[i : i + 3]) for i in range(0, len(calls), 3)]
    assert all(sorted(order) == ["a", "b", "c"] for order in orders)
    assert len(set(orders)) > 1  # shuffled, not a fixed order


def test_interleaved_refuses_fewer_than_five_rounds():
    """A figure from fewer than five rounds is refused rather than printed."""
    with pytest.raises(ValueError):
        common.interleaved({"a": lambda: (1.0, 1)}, rounds=4)


def test_ratios_pair_rounds_and_spread_is_median_min_max():
    """Ratios divide round by round; the spread shows median [min-max]."""
    rates = {"x": [2.0, 4.0, 9.0], "y": [1.0, 1.0, 3.0]}
    values = common.ratios(rates, "x", "y")
    assert values == [2.0, 4.0, 3.0]
    assert common.shown(common.spread(values), 1) == "3.0 [2.0-4.0]"


def test_goal_marks_the_median_not_the_best_round():
    """A goal met only by the best round is shown as missed."""
    s = {"median": 0.2, "min": 0.1, "max": 0.9}
    assert "✗" in sections.goal(s, 0.25)
    assert "✓" in sections.goal({**s, "median": 0.3}, 0.25)


def test_only_accepts_repeated_and_comma_separated_parts_and_refuses_unknown_ones():
    """--only issuance,peer --only web keeps the report's order; a typo is an error."""
    assert run.parse_only(["web,issuance", "peer"]) == ["issuance", "peer", "web"]
    assert run.parse_only(None) == run.PARTS
    with pytest.raises(SystemExit):
        run.parse_only(["issuanse"])


def test_drain_section_prints_whatever_rows_it_is_given():
    """The drain contract: rows of label -> text, any labels, shown as a table with notes."""
    line = {
        "bench": "drain",
        "rows": [{"db": "sqlite", "sender": "raw", "msg/s": "900"}, {"db": "pg", "ratio": "0.4"}],
        "notes": "SMTP server in its own process.",
    }
    text = sections.drain(lambda *a: line, quick=False)
    assert "| db | sender | msg/s | ratio |" in text
    assert "| pg |  |  | 0.4 |" in text
    assert "SMTP server in its own process." in text
    assert "error: boom" in sections.drain(lambda *a: {"error": ["boom"]}, quick=False)


def test_one_tiny_issuance_run_end_to_end():
    """bench.issuance on SQLite with 2 requests a side runs its 5 interleaved rounds."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.issuance", "-n", "2", "--rounds", "5", "--seed", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "issuance"
    assert {name: len(v) for name, v in result["rates"].items()} == {
        "raw": 5,
        "single": 5,
        "bulk": 5,
    }
    spread = result["ratios"]["single/raw"]
    assert spread["rounds"] == 5
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]
