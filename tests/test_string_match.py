"""RULER's string_match_all / string_match_part, checked on the cases RULER's scoring implies."""

import pytest

from harness.taskkit.string_match import string_match_all, string_match_part


def test_all_counts_each_reference_found_in_any_order():
    assert string_match_all("7 1 4 2 9 3 8", ["2 9 3", "7 1"]) == 1.0
    assert string_match_all("7 1 4 2 9 3 8", ["2 9 3", "5 5"]) == 0.5
    assert string_match_all("nothing here", ["2 9 3"]) == 0.0


def test_part_is_one_when_any_reference_is_found():
    assert string_match_part("the answer is Paris", ["paris", "London"]) == 1.0
    assert string_match_part("the answer is Rome", ["paris", "London"]) == 0.0


def test_matching_ignores_case():
    assert string_match_all("ABC def", ["abc", "DEF"]) == 1.0


def test_no_reference_is_an_error():
    with pytest.raises(ValueError, match="at least one reference"):
        string_match_all("x", [])
    with pytest.raises(ValueError, match="at least one reference"):
        string_match_part("x", [])
