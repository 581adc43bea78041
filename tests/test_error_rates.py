"""The error rates the methods page prints (book/generated/error_rates.json, written by benchmarks/error_rates.py)
hold the rule's targets, and were measured under the rule the package runs now.

The simulations take about half an hour, too long for the suite; the suite reads their output instead and
fails when the rule changed since (RULE_VERSION) or when a measured rate is not consistent with its target.
"Consistent" is a one-sided exact binomial test at 1%: with 30 runs per cell, a true rate of 5% gives 4 or
more false calls 6% of the time, which must not fail the suite, while 7 or more (a rate near 20%) must.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binom

from green_profiles.analysis.fits.bootstrap import RULE_VERSION

RESULTS = Path(__file__).resolve().parents[1] / "book" / "generated" / "error_rates.json"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(RESULTS.read_text())


def cells(results: dict, truth: str, noise: str | None = None, documents: int | None = None) -> list[dict]:
    found = [c for c in results["cells"] if c["truth"] == truth and (noise is None or c["noise"] == noise)
             and (documents is None or c["documents"] == documents)]
    assert found, (truth, noise, documents)
    return found


def at_most(count: int, n: int, rate: float) -> bool:
    """Whether ``count`` of ``n`` is consistent with a true rate of at most ``rate`` (one-sided, 1%)."""
    return binom.sf(count - 1, n, rate) > 0.01


def at_least(count: int, n: int, rate: float) -> bool:
    """Whether ``count`` of ``n`` is consistent with a true rate of at least ``rate`` (one-sided, 1%)."""
    return binom.cdf(count, n, rate) > 0.01


def test_the_tables_were_measured_under_this_rule(results):
    assert results["rule_version"] == RULE_VERSION, "rerun benchmarks/error_rates.py: the rule changed"
    assert (RESULTS.parent / "error_rates.md").read_text().startswith("<!-- written by benchmarks/error_rates.py")


def test_the_consistency_check_itself_can_fail():
    assert at_most(4, 30, 0.05) and not at_most(7, 30, 0.05)
    assert at_least(22, 30, 0.8) and not at_least(15, 30, 0.8)


def test_an_exponential_is_rarely_called_a_power_law(results):
    for cell in cells(results, "exp_floor"):
        if cell["documents"] >= 8:
            assert at_most(cell["verdict"].get("power law", 0), cell["datasets"], 0.05), cell


def test_a_power_law_is_rarely_called_an_exponential_and_mostly_a_power_law(results):
    for cell in cells(results, "power_floor"):
        if cell["documents"] >= 16:
            assert at_most(cell["verdict"].get("exponential", 0), cell["datasets"], 0.02), cell
            assert at_least(cell["verdict"].get("power law", 0), cell["datasets"], 0.8), cell


def test_a_flat_profile_is_rarely_said_to_decay(results):
    for cell in cells(results, "flat"):
        decays = cell["datasets"] - cell["verdict"].get("flat", 0) - cell["verdict"].get("rising", 0)
        assert at_most(decays, cell["datasets"], 0.05), cell


def test_the_band_test_rarely_puts_an_edge_exponent_inside(results):
    for cell in cells(results, "power_floor"):
        assert at_most(cell["band"].get("inside the paper's band", 0), cell["datasets"], 0.05), cell


def test_an_exponential_with_floor_rarely_gets_a_plateau(results):
    for cell in cells(results, "exp_floor"):
        assert at_most(cell["plateau"], cell["datasets"], 0.10), cell
