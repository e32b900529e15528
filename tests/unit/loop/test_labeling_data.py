"""The pure parts of collect/label (models/labeling): prompt rows, resumable JSONL, and
grouping graded answers into training rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.core.routing_config import RoutingConfig
from models.labeling import grouping
from models.labeling.jsonl import AppendLog, read_rows
from models.labeling.prompts import latest_answers, prompt_id, prompt_of, read_prompts

MSG = [{"role": "user", "content": "hi"}]


def test_prompt_rows_messages_text_and_capture() -> None:
    plain = prompt_of({"messages": MSG, "reference": 3, "task": "math"}, "f:1")
    assert plain.id == prompt_id(MSG) and plain.id.startswith("p-") and len(plain.id) == 18
    assert plain.reference == 3 and plain.extra == {"task": "math"}
    assert prompt_of({"text": "hi"}, "f:1").messages == MSG
    assert prompt_of({"id": 7, "text": "hi"}, "f:1").id == "7"
    capture = {
        "request_id": "req-1", "time": "2026-12-01T00:00:00Z", "messages": MSG,
        "decision": {"model": "a", "strategy": "auto", "intent": None, "reason": "x"},
        "status": 200, "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }  # fmt: skip
    row = prompt_of(capture, "f:1")
    assert row.id == "req-1" and row.messages == MSG and row.reference is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "x"}, "expected 'messages'"),
        ({"messages": []}, "expected 'messages'"),
        ({"messages": ["hi"]}, r"messages\[0\] is not an object"),
        ({"messages": MSG, "id": ["x"]}, "'id' must be"),
        ({"messages": MSG, "reference": {"a": 1}}, "'reference' must be"),
        ({"messages": MSG, "reference": True}, "'reference' must be"),
    ],
)
def test_bad_prompt_rows_name_the_row(row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        prompt_of(row, "p.jsonl row 4")
    assert "p.jsonl row 4" in str(info.value)


def test_read_prompts_drops_repeats_and_refuses_a_reused_id(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    a.write_text(json.dumps({"text": "hi"}) + "\n" + json.dumps({"text": "hi"}) + "\n")
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"id": "x", "text": "one"}) + "\n")
    prompts, repeated = read_prompts([a, b])
    assert [p.messages[0]["content"] for p in prompts] == ["hi", "one"] and repeated == 1
    b.write_text(b.read_text() + json.dumps({"id": "x", "text": "two"}) + "\n")
    with pytest.raises(ValueError, match=r"b.jsonl row 2: id 'x' was already used by .*row 1"):
        read_prompts([a, b])


def test_a_torn_last_line_is_ignored_and_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "mod')
    rows, torn = read_rows(path)
    assert rows == [{"id": "a"}] and torn
    with AppendLog(path) as log:
        log.write({"id": "c"})
    assert path.read_bytes() == b'{"id": "a"}\n{"id":"c"}\n'


def test_a_whole_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    assert read_rows(path) == ([{"id": "a"}, {"id": "b"}], False)
    with AppendLog(path) as log:
        log.write({"id": "c"})
    assert [r["id"] for r in read_rows(path)[0]] == ["a", "b", "c"]


def test_a_bad_line_before_the_end_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"answers.jsonl:2: not valid JSON"):
        read_rows(path)


def test_new_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    with AppendLog(path) as log:
        log.write({"id": "a"})
    assert path.stat().st_mode & 0o777 == 0o600


def _answer(pid: str, model: str, status: str = "ok", **extra: object) -> dict:
    row = {"id": pid, "model": model, "messages": MSG, "status": status, "answer": "x"}
    return row | extra


def test_latest_answer_prefers_a_usable_one() -> None:
    rows = [
        _answer("p", "a", "error"),
        _answer("p", "a", "ok", answer="first"),
        _answer("p", "a", "error"),
        _answer("p", "b", "error", error="one"),
        _answer("p", "b", "error", error="two"),
    ]
    got = latest_answers(rows)["p"]
    assert got["a"]["answer"] == "first" and got["b"]["error"] == "two"


CONFIG = RoutingConfig.model_validate(
    {
        "models": [
            {"name": "a", "input_price_per_1m": 1.0, "output_price_per_1m": 2.0},
            {"name": "b", "cost": 1.0},
        ]
    }
)


def test_costs_come_from_the_config_prices_else_the_recorded_cost() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    assert grouping.answer_cost(_answer("p", "a", usage=usage, cost_usd=9.0), CONFIG) == (
        pytest.approx(0.002, abs=1e-12)
    )
    assert grouping.answer_cost(_answer("p", "a", usage=None, cost_usd=9.0), CONFIG) is None
    assert grouping.answer_cost(_answer("p", "c", cost_usd=0.25), CONFIG) == 0.25
    assert grouping.answer_cost(_answer("p", "c", cost_usd=0.25), None) == 0.25
    by_prompt = {"p": {"a": _answer("p", "a"), "b": _answer("p", "b", cost_usd=1.0)}}
    assert grouping.priced_models(by_prompt, ["a", "b"], CONFIG) == (False, ["b"])
    assert grouping.priced_models(by_prompt, ["a", "b"], None) == (False, ["a"])


def test_training_rows_and_the_reasons_a_prompt_is_left_out() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 10}
    answers = {
        "a": _answer("p", "a", usage=usage, reference="r", task="t"),
        "c": _answer("p", "c", cost_usd=0.5),
    }
    row, why = grouping.training_row(answers, ["a", "c"], {"a": 1.0, "c": 0.0}, CONFIG, True)
    assert why is None and row is not None
    assert row["scores"] == {"a": 1.0, "c": 0.0}
    assert row["costs"] == {"a": pytest.approx(30e-6), "c": 0.5}
    assert row["id"] == "p" and row["messages"] == MSG and row["task"] == "t"
    left_out = {
        grouping.NO_ANSWER: ({"a": answers["a"]}, {"a": 1.0}),
        grouping.FAILED: ({**answers, "c": _answer("p", "c", "error")}, {"a": 1.0, "c": 1.0}),
        grouping.NO_SCORE: (answers, {"a": 1.0, "c": None}),
        grouping.NO_COST: ({**answers, "a": _answer("p", "a", usage=None)}, {"a": 1, "c": 1}),
    }
    for reason, (group, scores) in left_out.items():
        assert grouping.training_row(group, ["a", "c"], scores, CONFIG, True) == (None, reason)
    row, _ = grouping.training_row(answers, ["a", "c"], {"a": 1.0, "c": 0.0}, CONFIG, False)
    assert row is not None and "costs" not in row
