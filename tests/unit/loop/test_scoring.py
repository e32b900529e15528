"""Reference scorers (normalisation, last number, whole-word containment) and reading
a judge's rating, on the cases that trip naive versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.labeling.judge import (
    DEFAULT_RUBRIC,
    check_template,
    judge_prompt,
    parse_verdict,
    rating_score,
)
from models.labeling.reference import normalise, numbers, score


@pytest.mark.parametrize(
    ("answer", "ref", "want"),
    [
        ("Paris", "paris", 1.0),
        ("  **Paris.**\n", "Paris", 1.0),  # markdown, punctuation, whitespace
        ("U.S.A.", "usa", 1.0),
        ("ＰＡＲＩＳ", "paris", 1.0),  # full-width letters (NFKC)
        ("<think>maybe Lyon</think>Paris", "Paris", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("$5", "5", 0.0),  # symbols are kept
        ("anything", "", None),  # nothing to compare with
        ("anything", "...", None),
    ],
)
def test_exact(answer: str, ref: str, want: float | None) -> None:
    assert score("exact", answer, ref) == want


@pytest.mark.parametrize(
    ("answer", "ref", "want"),
    [
        ("The answer is $1,234.", "1234", 1.0),
        ("Total: 1,234.50 dollars", 1234.5, 1.0),
        ("It is 3.0", 3, 1.0),
        ("First 7, then 12 apples", "12", 1.0),  # the last number counts
        ("12 apples, or 7", "12", 0.0),
        ("x = -5", "-5", 1.0),
        ("pages 3-5", "5", 1.0),  # a range, not minus five
        ("pages 3-5", "-5", 0.0),
        ("50% of them", "50", 1.0),
        ("version v2 says 8", "8", 1.0),  # digits glued to a word are not a number
        ("no digits here", "4", 0.0),
        ("42", "#### 42", 1.0),  # the reference's last number
        ("42", "forty-two", None),  # a reference without a number cannot be scored
        ("<think>2+2=5</think> 4", "4", 1.0),
        ("10,000 steps", 10000, 1.0),
        ("1,2", "2", 1.0),  # not a thousands group: two numbers
    ],
)
def test_number(answer: str, ref: str | float, want: float | None) -> None:
    assert score("number", answer, ref) == want


@pytest.mark.parametrize(
    ("answer", "ref", "want"),
    [
        ("I think the capital is Paris!", "paris", 1.0),
        ("It is 42.", "4", 0.0),  # whole words only
        ("It is 4.", "4", 1.0),
        ("New-York City", "new york", 0.0),  # punctuation is deleted, not a space
        ("NewYork city", "New-York", 1.0),
        ("the Eiffel   tower", "eiffel tower", 1.0),
        ("x", None, None),
    ],
)
def test_contains(answer: str, ref: str | None, want: float | None) -> None:
    assert score("contains", answer, ref) == want


def test_normalise_and_numbers() -> None:
    assert normalise("  Hello,\tWORLD!! ") == "hello world"
    assert numbers("-3, +4 and −2.5 of 1,000,000") == [-3.0, 4.0, -2.5, 1e6]


@pytest.mark.parametrize(
    ("verdict", "rating"),
    [
        ("Clear and right.\nRating: [[9]]", 9.0),
        ("Rating: [[ 7 ]]", 7.0),
        ("I rate it 7/10.", 7.0),
        ("Score: 3", 3.0),
        ("score - 4 (some errors)", 4.0),
        ("Verdict: 6 out of 10", 6.0),
        ("Mostly fine.\n\n**8**", 8.0),
        ("It is 7.5/10", 7.5),
        ("7 out of 10. Rating: [[7]]", 7.0),  # the same rating twice
        ("<think>Rating: [[2]]?</think>Rating: [[6]]", 6.0),  # reasoning is ignored
        ("Rating: [[10]]", 10.0),
        ("Rating: [[1]]", 1.0),
    ],
)
def test_verdict_ratings_are_read(verdict: str, rating: float) -> None:
    assert parse_verdict(verdict) == rating


@pytest.mark.parametrize(
    "verdict",
    [
        "",
        "A fine answer overall.",
        "Rating: [[7]] or maybe [[3]]",  # two different ratings
        "Rating: [[11]]",
        "Rating: [[0]]",
        "Score: 2 ... score: 9",
        "It is 8/10 or 9/10",
        "Reference:\n2\n\nThe answer is fine.",  # a bare number counts only as the last line
    ],
)
def test_malformed_or_ambiguous_verdicts_are_none(verdict: str) -> None:
    assert parse_verdict(verdict) is None


def test_rating_maps_to_zero_one() -> None:
    assert rating_score(1) == 0.0 and rating_score(10) == 1.0
    assert rating_score(7) == pytest.approx(6 / 9)


def test_judge_prompt_fills_placeholders_once() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is {answer}?"},
    ]
    text = judge_prompt(DEFAULT_RUBRIC, messages, "it is {question}", "42")
    assert "[Reference answer]\n42" in text
    assert "System: be brief\n\nUser: what is {answer}?" in text
    assert "[Answer to grade]\nit is {question}" in text  # never expanded again
    plain = judge_prompt(DEFAULT_RUBRIC, messages[1:], "a", None)
    assert "Reference" not in plain and plain.count("what is {answer}?") == 1
    custom = judge_prompt("Q={question} A={answer} R={reference} {other}", messages[1:], "a", 3)
    assert custom == "Q=what is {answer}? A=a R=3 {other}"


def test_images_in_the_question_are_marked() -> None:
    parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {}}]
    text = judge_prompt("{question}|{answer}", [{"role": "user", "content": parts}], "a", None)
    assert text == "what is this\n[image]|a"


def test_the_documented_rubric_is_the_one_used() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "collect-label.md").read_text()
    for line in DEFAULT_RUBRIC.splitlines():
        assert (f"    {line}" if line else "") in doc.splitlines()


def test_a_template_needs_question_and_answer() -> None:
    check_template(DEFAULT_RUBRIC, "default")
    with pytest.raises(ValueError, match=r"mine.txt: the judge prompt needs \{answer\}"):
        check_template("Grade {question}", "mine.txt")
