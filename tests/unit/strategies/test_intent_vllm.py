"""The vLLM intent backend with a fake engine: prompt, window, policy, mapping.

No vLLM here: a character-level fake tokenizer makes token counts equal to characters,
so budgets in these tests are easy to reason about.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.metrics import RouterMetrics
from app.settings import DEFAULT_CONFIG, Settings
from models.core.conversation import Conversation, Turn
from models.core.errors import StrategyUnavailableError
from models.core.routing_config import RoutingConfig, load_routing_config, parse_routing_config
from models.inference.vllm_engine import (
    CPU_KV_CACHE_BYTES,
    ChoiceOutput,
    EngineDeadError,
    EngineRequestError,
    EngineStartupError,
    VllmEngine,
    engine_kwargs,
    explain_startup_failure,
)
from strategies.base import RouteOptions, StrategyContext
from strategies.intent import vllm as intent_vllm
from strategies.intent.strategy import IntentStrategy
from strategies.intent.vllm import (
    ELLIPSIS,
    INSTRUCTION,
    QUESTION,
    TURN_TOKEN_CAP,
    VllmIntentClassifier,
)
from strategies.settings import IntentSettings

CUSTOM_YAML = """
models:
  - {name: model-a, cost: 1.0}
  - {name: model-b, cost: 0.2}
  - {name: model-v, cost: 0.5, vision: true}
intents:
  - {name: code, description: Programming help, model: model-a}
  - {name: greet, description: Greetings, model: model-b}
fallback_model: model-b
"""
ROUTES_BLOCK = (
    "[\n"
    '{"name": "code", "description": "Programming help"},\n'
    '{"name": "greet", "description": "Greetings"},\n'
    '{"name": "other", "description": '
    '"None of the other routes matches the user\'s latest intent."}\n'
    "]"
)
GEN_PROMPT = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


class CharTokenizer:
    """One token per character; a ChatML template with Qwen3's enable_thinking switch."""

    def __init__(self, template: bool = True, thinking_switch: bool = True) -> None:
        self.template = template
        self.thinking_switch = thinking_switch

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        if not self.template:
            raise ValueError("this tokenizer has no chat template")
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        if kwargs.get("add_generation_prompt"):
            out += "<|im_start|>assistant\n"
            if self.thinking_switch and kwargs.get("enable_thinking") is False:
                out += "<think>\n\n</think>\n\n"
        return out


class FakeEngine:
    """Answers with a fixed route (or a function of the prompt), optionally slow or failing."""

    def __init__(
        self,
        answer: str | Callable[[list[int]], str] = "greet",
        max_model_len: int = 4096,
        delay: float = 0.0,
        error: Exception | None = None,
        tokenizer: CharTokenizer | None = None,
    ) -> None:
        self.tokenizer = tokenizer or CharTokenizer()
        self.max_model_len = max_model_len
        self.answer, self.delay, self.error = answer, delay, error
        self.calls: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.closed = False
        self.dead = False

    async def generate_choice(
        self, prompt: Any, choices: Sequence[str], request_id: str, max_tokens: int | None = None
    ) -> ChoiceOutput:
        self.calls.append(
            {"prompt": list(prompt), "choices": list(choices), "id": request_id, "max": max_tokens}
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.dead:
                raise EngineDeadError("engine core died")
            if self.error is not None:
                raise self.error
        finally:
            self.in_flight -= 1
        text = self.answer(list(prompt)) if callable(self.answer) else self.answer
        return ChoiceOutput(text, len(prompt), 0, -0.1, "stop")

    async def check_health(self) -> None:
        if self.dead:
            raise EngineDeadError("engine core died")

    async def shutdown(self) -> None:
        self.closed = True


def make_context(config: RoutingConfig | None = None, **intent: Any) -> StrategyContext:
    settings = Settings(intent={"backend": "vllm", "model": "/fake", **intent})
    config = config or parse_routing_config(CUSTOM_YAML, Path("custom.yaml"))
    return StrategyContext(settings=settings, config=config, metrics=RouterMetrics())


async def started(ctx: StrategyContext, engine: FakeEngine) -> VllmIntentClassifier:
    async def factory(settings: IntentSettings) -> FakeEngine:
        return engine

    clf = VllmIntentClassifier(ctx, engine_factory=factory)
    await clf.start()
    return clf


async def strategy_with(
    monkeypatch: pytest.MonkeyPatch, ctx: StrategyContext, engine: FakeEngine
) -> IntentStrategy:
    async def factory(settings: IntentSettings) -> FakeEngine:
        return engine

    monkeypatch.setattr(intent_vllm, "default_engine_factory", factory)
    strategy = IntentStrategy(ctx)
    await strategy.start()
    return strategy


def conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(turns=tuple(Turn(role=r, text=t) for r, t in turns))  # type: ignore[arg-type]


# -- prompt ------------------------------------------------------------------------------
async def test_exact_prompt_routes_then_conversation_then_question() -> None:
    clf = await started(make_context(), FakeEngine())
    prompt = clf.build_prompt(conv(("user", "hi there")))
    content = (
        INSTRUCTION.format(routes=ROUTES_BLOCK)
        + '{"role": "user", "content": "hi there"}'
        + QUESTION
    )
    assert prompt.text == f"<|im_start|>user\n{content}<|im_end|>\n{GEN_PROMPT}"
    assert prompt.token_ids == [ord(c) for c in prompt.text]
    assert prompt.text.index("<routes>") < prompt.text.index("<conversation>")
    assert "latest intent" in QUESTION and "answer other" in QUESTION


async def test_fixed_prefix_is_byte_identical_across_requests() -> None:
    clf = await started(make_context(), FakeEngine())
    a = clf.build_prompt(conv(("user", "write a sort in rust")))
    b = clf.build_prompt(conv(("system", "be brief"), ("user", "hello"), ("assistant", "hey")))
    head = a.text[: a.text.index("<conversation>\n") + len("<conversation>\n")]
    assert b.text.startswith(head) and ROUTES_BLOCK in head
    assert a.token_ids[: len(head)] == b.token_ids[: len(head)]


async def test_template_without_thinking_switch_or_without_template() -> None:
    plain = await started(make_context(), FakeEngine(tokenizer=CharTokenizer(template=False)))
    text = plain.build_prompt(conv(("user", "hi"))).text
    assert text.startswith(INSTRUCTION[:20]) and text.endswith(QUESTION + "\nRoute: ")
    no_switch = CharTokenizer(thinking_switch=False)
    other = await started(make_context(), FakeEngine(tokenizer=no_switch))
    text = other.build_prompt(conv(("user", "hi"))).text
    assert text.endswith("<|im_start|>assistant\n") and "<think>" not in text


async def test_image_markers_reach_the_prompt() -> None:
    clf = await started(make_context(), FakeEngine())
    image = Image.new("RGB", (4, 4))
    prompt = clf.build_prompt(Conversation.from_text("what is this?", images=[image]))
    assert '"content": "what is this? [image]"' in prompt.text


# -- window ------------------------------------------------------------------------------
async def test_window_drops_oldest_turns_and_keeps_latest_user_turn() -> None:
    ctx = make_context(window_turns=50)
    probe = await started(ctx, FakeEngine())
    fixed = len(probe.build_prompt(conv()).token_ids)
    engine = FakeEngine(max_model_len=fixed + 400 + probe.max_tokens + 16)
    clf = await started(ctx, engine)
    turns = [
        ("user" if i % 2 == 0 else "assistant", f"turn-{i:02d} " + "x" * 60) for i in range(20)
    ]
    prompt = clf.build_prompt(conv(*turns, ("user", "LATEST please fix it")))
    assert prompt.truncated
    assert len(prompt.token_ids) <= engine.max_model_len - clf.max_tokens
    assert "LATEST please fix it" in prompt.text and "turn-19" in prompt.text
    assert "turn-00" not in prompt.text
    shown = [i for i in range(20) if f"turn-{i:02d}" in prompt.text]
    assert shown == list(range(shown[0], 20))  # a contiguous run of the newest turns
    positions = [prompt.text.index(f"turn-{i:02d}") for i in shown]
    assert positions == sorted(positions)  # oldest first
    assert prompt.text.index("turn-19") < prompt.text.index("LATEST")


async def test_latest_user_turn_too_long_is_cut_at_its_start() -> None:
    engine = FakeEngine(max_model_len=2500)
    clf = await started(make_context(), engine)
    prompt = clf.build_prompt(conv(("user", "old"), ("user", "START " + "y" * 5000 + " END")))
    assert len(prompt.token_ids) <= 2500 - clf.max_tokens
    assert f'"content": "{ELLIPSIS}y' in prompt.text and prompt.text.count(" END") == 1
    assert "START" not in prompt.text and '"old"' not in prompt.text


async def test_escape_heavy_or_huge_latest_turn_still_fits() -> None:
    clf = await started(make_context(), FakeEngine(max_model_len=2500))
    for text in ('"\\\n' * 3000 + "END", "z" * 2_000_000 + "END"):
        began = time.perf_counter()
        prompt = clf.build_prompt(conv(("user", text)))
        assert time.perf_counter() - began < 0.5  # cut by characters before tokenizing
        assert len(prompt.token_ids) <= 2500 - clf.max_tokens
        assert prompt.truncated and prompt.turns == 1 and 'END"}' in prompt.text


async def test_window_turns_limits_user_turns() -> None:
    clf = await started(make_context(window_turns=2), FakeEngine())
    turns = [("user", f"u{i}") for i in range(5)]
    prompt = clf.build_prompt(conv(*turns))
    assert [f'"u{i}"' in prompt.text for i in range(5)] == [False, False, False, True, True]
    assert prompt.truncated and prompt.turns == 2


async def test_system_prompt_first_and_capped_tool_output_capped() -> None:
    clf = await started(make_context(), FakeEngine())
    prompt = clf.build_prompt(
        conv(
            ("system", "You are a shopping assistant. " + "s" * 1000),
            ("user", "find shoes"),
            ("tool", "t" * 1000),
            ("user", "thanks!"),
        )
    )
    text = prompt.text
    assert text.index('"role": "system"') < text.index("find shoes") < text.index("thanks!")
    assert "You are a shopping assistant." in text and "s" * 200 not in text
    assert "t" * (TURN_TOKEN_CAP - 60) + ELLIPSIS in text and "t" * TURN_TOKEN_CAP not in text
    assert prompt.truncated


async def test_system_prompt_dropped_before_dialog_when_short_of_room() -> None:
    probe = await started(make_context(), FakeEngine())
    fixed = len(probe.build_prompt(conv()).token_ids)
    clf = await started(make_context(), FakeEngine(max_model_len=fixed + 100))
    prompt = clf.build_prompt(conv(("system", "persona " * 20), ("user", "u" * 40)))
    assert "u" * 40 in prompt.text and "persona" not in prompt.text


# -- engine calls ------------------------------------------------------------------------
async def test_choices_are_route_names_plus_other() -> None:
    engine = FakeEngine(answer="code")
    clf = await started(make_context(), engine)
    result = await clf.classify(conv(("user", "sort a list in python")))
    await clf.classify(conv(("user", "again")))
    assert result.intent == "code"
    assert result.detail["prompt_tokens"] == len(engine.calls[0]["prompt"])
    assert 0 < result.detail["confidence"] <= 1
    assert engine.calls[0]["choices"] == ["code", "greet", "other"]
    assert engine.calls[0]["max"] == len("other") + 1  # longest name in bytes, + EOS
    assert engine.calls[0]["id"] != engine.calls[1]["id"]


async def test_choices_leave_out_routes_whose_requirements_fail() -> None:
    """Default config: try_again needs an earlier answer, image_understanding an image."""
    engine = FakeEngine(answer="other")
    clf = await started(make_context(load_routing_config(DEFAULT_CONFIG)), engine)
    await clf.classify(conv(("user", "that is wrong")))
    first = engine.calls[0]["choices"]
    assert "try_again" not in first and "image_understanding" not in first
    assert "hard_question" in first and "other" in first
    img = Image.new("RGB", (4, 4))
    with_both = Conversation(
        turns=(
            Turn(role="user", text="what is this? [image]", images=(img,)),
            Turn(role="assistant", text="a cat"),
            Turn(role="user", text="no, look again"),
        )
    )
    await clf.classify(with_both)
    assert {"try_again", "image_understanding"} <= set(engine.calls[1]["choices"])


def test_parse_maps_anything_to_a_route() -> None:
    clf = VllmIntentClassifier(make_context())
    assert clf.parse(" greet ") == "greet"
    assert clf.parse("gre") == "greet"  # a cut-off answer
    assert clf.parse("banana") == "other" and clf.parse("") == "other"


async def test_concurrent_requests_reach_the_engine_at_once() -> None:
    engine = FakeEngine(delay=0.05)
    clf = await started(make_context(), engine)
    results = await asyncio.gather(*(clf.classify(conv(("user", f"q{i}"))) for i in range(32)))
    assert {r.intent for r in results} == {"greet"}
    assert engine.max_in_flight == 32  # no lock, no queue in front of the engine


async def test_routes_too_long_for_context_fail_at_startup() -> None:
    engine = FakeEngine(max_model_len=300)
    with pytest.raises(EngineStartupError, match="MAX_MODEL_LEN"):
        await started(make_context(), engine)
    assert engine.closed


# -- IntentStrategy with this backend ----------------------------------------------------
async def test_route_to_model_mapping_from_custom_config(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"sort": "code", "hello": "greet", "weather": "other"}

    def answer(prompt: list[int]) -> str:
        text = "".join(map(chr, prompt))
        return next(route for word, route in answers.items() if word in text.split("<conv")[-1])

    strategy = await strategy_with(monkeypatch, make_context(), FakeEngine(answer=answer))
    got = {
        word: await strategy.route(conv(("user", f"{word} please")), RouteOptions())
        for word in answers
    }
    assert {w: (d.intent, d.model, d.reason) for w, d in got.items()} == {
        "sort": ("code", "model-a", "intent"),
        "hello": ("greet", "model-b", "intent"),
        "weather": ("other", "model-b", "intent"),  # 'other' unmapped: the fallback model
    }
    assert got["sort"].detail["backend"] == "vllm"
    await strategy.aclose()


async def test_image_request_mapped_to_text_model_goes_to_vision_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = make_context(load_routing_config(DEFAULT_CONFIG))
    strategy = await strategy_with(monkeypatch, ctx, FakeEngine(answer="chit_chat"))
    image = Image.new("RGB", (4, 4))
    decision = await strategy.route(Conversation.from_text("hi!", images=[image]), RouteOptions())
    assert (decision.intent, decision.reason) == ("chit_chat", "vision_fallback")
    assert decision.model == "nvidia/nemotron-nano-12b-v2-vl"
    text_only = await strategy.route(Conversation.from_text("hi!"), RouteOptions())
    assert text_only.model == "nvidia/nvidia-nemotron-nano-9b-v2"


@pytest.mark.parametrize(
    ("engine_kw", "kind"),
    [({"error": EngineRequestError("engine died")}, "error"), ({"delay": 5.0}, "timeout")],
)
async def test_failure_policy_fallback(
    monkeypatch: pytest.MonkeyPatch, engine_kw: dict[str, Any], kind: str
) -> None:
    ctx = make_context(timeout_s=0.2)
    engine = FakeEngine()
    strategy = await strategy_with(monkeypatch, ctx, engine)
    for key, value in engine_kw.items():
        setattr(engine, key, value)
    decision = await strategy.route(conv(("user", "hello")), RouteOptions())
    assert (decision.model, decision.reason, decision.intent) == ("model-b", "fallback", None)
    sample = ctx.metrics.registry.get_sample_value(
        "llm_router_strategy_errors_total", {"strategy": "intent", "kind": kind}
    )
    assert sample == 1.0


@pytest.mark.parametrize("engine_kw", [{"error": EngineRequestError("boom")}, {"delay": 5.0}])
async def test_failure_policy_error(
    monkeypatch: pytest.MonkeyPatch, engine_kw: dict[str, Any]
) -> None:
    engine = FakeEngine()
    strategy = await strategy_with(
        monkeypatch, make_context(timeout_s=0.2, on_error="error"), engine
    )
    for key, value in engine_kw.items():
        setattr(engine, key, value)
    with pytest.raises(StrategyUnavailableError):
        await strategy.route(conv(("user", "hello")), RouteOptions())
    await strategy.aclose()
    assert engine.closed


# -- engine wrapper (no vLLM needed) -----------------------------------------------------
def test_engine_kwargs_size_kv_cache_on_cpu() -> None:
    settings = IntentSettings(model="Qwen/Qwen3-1.7B", max_model_len=2048, revision="main")
    cpu = engine_kwargs(settings, on_cpu=True)
    assert cpu["kv_cache_memory_bytes"] == CPU_KV_CACHE_BYTES == 512 * 1024**2
    assert cpu["enable_prefix_caching"] is True and cpu["max_model_len"] == 2048
    assert cpu["revision"] == "main" and cpu["model"] == "Qwen/Qwen3-1.7B"
    assert "kv_cache_memory_bytes" not in engine_kwargs(settings, on_cpu=False)
    sized = IntentSettings(kv_cache_bytes=2**30, enable_prefix_caching=False)
    gpu = engine_kwargs(sized, on_cpu=False)
    assert gpu["kv_cache_memory_bytes"] == 2**30 and gpu["enable_prefix_caching"] is False


async def test_engine_start_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(EngineStartupError, match="no such model directory"):
        await VllmEngine.start(IntentSettings(model=str(tmp_path / "missing")))
    with pytest.raises(EngineStartupError, match=r"no config\.json"):
        await VllmEngine.start(IntentSettings(model=str(tmp_path)))
    oom = explain_startup_failure("m", ValueError("No available memory for the cache blocks"))
    assert oom.startswith("not enough memory") and "MAX_MODEL_LEN" in oom
    hub = explain_startup_failure("org/model", OSError("We couldn't connect to huggingface.co"))
    assert "Hugging Face Hub" in hub and "ROUTER_INTENT__MODEL" in hub


def test_modules_do_not_import_vllm() -> None:
    code = (
        "import sys, strategies.intent.vllm, models.inference.vllm_engine, tests.tiny_models;"
        "assert 'vllm' not in sys.modules, 'vllm imported'"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_engine_kwargs_batch_limits_and_stats() -> None:
    default = engine_kwargs(IntentSettings(), on_cpu=False)
    assert "max_num_seqs" not in default and "max_num_batched_tokens" not in default
    assert default["disable_log_stats"] is True
    tuned = IntentSettings(max_num_seqs=64, max_num_batched_tokens=8192, vllm_metrics=True)
    kwargs = engine_kwargs(tuned, on_cpu=False)
    assert (kwargs["max_num_seqs"], kwargs["max_num_batched_tokens"]) == (64, 8192)
    assert kwargs["disable_log_stats"] is False  # vLLM's stat loggers feed /metrics


def test_default_registry_vllm_metrics_are_bridged() -> None:
    from prometheus_client import REGISTRY, Counter, generate_latest

    theirs = Counter("vllm:bridge_probe", "stands in for vLLM's own metrics", registry=REGISTRY)
    try:
        theirs.inc(3)
        metrics = RouterMetrics()
        assert b"vllm:bridge_probe" not in generate_latest(metrics.registry)
        metrics.include_default_registry("vllm:")
        text = generate_latest(metrics.registry).decode()
        assert "vllm:bridge_probe_total 3.0" in text
        assert "python_gc" not in text  # only the prefix, not the whole default registry
    finally:
        REGISTRY.unregister(theirs)


async def test_prompt_is_tokenized_off_the_event_loop() -> None:
    import threading

    threads: set[str] = set()

    class RecordingTokenizer(CharTokenizer):
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            threads.add(threading.current_thread().name)
            return super().encode(text)

    tok = RecordingTokenizer()
    clf = await started(make_context(), FakeEngine(tokenizer=tok))
    threads.clear()
    await clf.classify(conv(("user", "hello there")))
    assert threads and threading.current_thread().name not in threads
    await clf.aclose()
