"""Prices in the routing config (validated, the source of every dollar the product counts)
and the token/cost arithmetic built on them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.settings import DEFAULT_CONFIG
from models.core.errors import ConfigError
from models.core.pricing import Usage, default_baseline_model, parse_usage, usage_cost
from models.core.routing_config import load_routing_config


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "routing.yaml"
    path.write_text(textwrap.dedent(text))
    return load_routing_config(path)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_default_config_has_list_prices_for_every_model() -> None:
    config = load_routing_config(DEFAULT_CONFIG)
    prices = {m.name: (m.input_price_per_1m, m.output_price_per_1m) for m in config.models}
    assert prices == {
        "gpt-5-chat": (1.25, 10.0),
        "nvidia/nemotron-nano-12b-v2-vl": (0.20, 0.60),
        "nvidia/nvidia-nemotron-nano-9b-v2": (0.04, 0.16),
    }
    # the reference router's relative costs stay what the strategies rank by
    assert [m.cost for m in config.models] == [1.0, 0.5, 0.3]
    assert default_baseline_model(config) == "gpt-5-chat"


def test_cost_is_derived_from_prices_when_left_out(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        typical_request: {prompt_tokens: 2000, completion_tokens: 500}
        models:
          - name: big
            input_price_per_1m: 2.0
            output_price_per_1m: 8.0
          - name: small
            cost: 0.7
            input_price_per_1m: 0.1
            output_price_per_1m: 0.4
          - name: unpriced
        """,
    )
    # USD per 1k requests of 2000 prompt + 500 completion tokens
    assert config.model("big").cost == pytest.approx((2000 * 2.0 + 500 * 8.0) / 1e6 * 1000)
    assert config.model("small").cost == 0.7  # an explicit cost wins
    assert config.model("unpriced").cost == 1.0
    assert not config.model("unpriced").priced


def test_default_typical_request_mix(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        models:
          - name: m
            input_price_per_1m: 1.0
            output_price_per_1m: 4.0
        """,
    )
    assert config.model("m").cost == pytest.approx((1000 * 1.0 + 250 * 4.0) / 1000)


@pytest.mark.parametrize(
    "fields,message",
    [
        ("input_price_per_1m: -1\n    output_price_per_1m: 1", "greater than or equal to 0"),
        ("output_price_per_1m: 1", "set both input_price_per_1m and output_price_per_1m"),
        ("input_price_per_1m: 1", "set both input_price_per_1m and output_price_per_1m"),
        ("input_price_per_1m: cheap\n    output_price_per_1m: 1", "valid number"),
        ("cached_input_price_per_1m: 0.1", "cached_input_price_per_1m needs"),
        ("input_price_per_1m_usd: 1", "Extra inputs are not permitted"),
    ],
)
def test_bad_prices_name_the_key(tmp_path: Path, fields: str, message: str) -> None:
    error = load_error(tmp_path, f"models:\n  - name: m\n    {fields}\n")
    assert "models[0]" in error
    assert message in error


def test_bad_typical_request(tmp_path: Path) -> None:
    error = load_error(tmp_path, "typical_request: {prompt_tokens: -5}\nmodels:\n  - name: m\n")
    assert "typical_request.prompt_tokens" in error


def test_baseline_is_the_priciest_text_model(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        models:
          - name: eyes
            vision: true
            input_price_per_1m: 50
            output_price_per_1m: 50
          - name: mid
            cost: 5
            input_price_per_1m: 3
            output_price_per_1m: 15
          - name: cheap
            cost: 9
            input_price_per_1m: 0.1
            output_price_per_1m: 0.2
        """,
    )
    # by price at the typical mix, not by the relative cost, and never the vision model
    assert default_baseline_model(config) == "mid"


def test_usage_cost_exact_with_cached_tokens(tmp_path: Path) -> None:
    config = load_routing_config(DEFAULT_CONFIG)
    gpt = config.model("gpt-5-chat")
    used = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    assert usage_cost(gpt, used) == pytest.approx((600 * 1.25 + 400 * 0.125 + 200 * 10) / 1e6)
    nano = config.model("nvidia/nvidia-nemotron-nano-9b-v2")  # no cached price: full input
    assert usage_cost(nano, used) == pytest.approx((1000 * 0.04 + 200 * 0.16) / 1e6)
    unpriced = load(tmp_path, "models:\n  - name: m\n").model("m")
    assert usage_cost(unpriced, used) is None


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}, Usage(12, 3)),
        (
            {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
            Usage(12, 3, 8),
        ),
        (  # a cached count above the prompt is clipped, never negative fresh tokens
            {
                "prompt_tokens": 2,
                "completion_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 9},
            },
            Usage(2, 0, 2),
        ),
        ({"prompt_tokens": 12}, None),
        ({"prompt_tokens": "12", "completion_tokens": 3}, None),
        ({"prompt_tokens": -1, "completion_tokens": 3}, None),
        ({"prompt_tokens": True, "completion_tokens": 3}, None),
        (None, None),
        ([], None),
    ],
)
def test_parse_usage_never_raises(data: object, expected: Usage | None) -> None:
    assert parse_usage(data) == expected


def test_usages_add_up() -> None:
    total = Usage(1, 2, 1) + Usage(10, 20, 0)
    assert total == Usage(11, 22, 1)
    assert total.total_tokens == 33
