"""The answer scorers."""

from align_lens import evals


def test_lenient_match_is_the_official_rule():
    assert evals.lenient_match("San Diego State University", "San Diego")
    assert evals.lenient_match("San", "San Diego")  # a prefix counts
    assert evals.lenient_match("St", "University of St. Thomas")  # official cut at '.'
    assert not evals.lenient_match("", "x") and not evals.lenient_match("Boston", "Austin")
