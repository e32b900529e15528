"""Settings sections the strategies read: ``ROUTER_INTENT__*``, ``ROUTER_AUTO__*``,
``ROUTER_BATCH__*``, ``ROUTER_ENCODER__*``, ``ROUTER_SESSIONS__*``.

They live beside the strategies so strategy code needs nothing from the app;
:class:`app.settings.Settings` reads them from the environment with the rest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class IntentSettings(BaseModel):
    """IntentStrategy: which classifier backend, and its knobs."""

    backend: Literal["embedding", "vllm", "remote"] = Field(
        "embedding",
        description="Classifier backend: embedding (offline default), vllm (in-process) or "
        "remote (an OpenAI-compatible server such as vllm serve).",
    )
    model: str = Field(
        "Qwen/Qwen3-1.7B",
        description="vllm: Hugging Face model id or local path; remote: the served model name.",
    )
    encoder: str = Field(
        "minilm",
        description="Embedding backend: 'minilm' (packaged all-MiniLM-L6-v2) or a "
        "sentence-transformers model path.",
    )
    device: str = Field("cpu", description="Embedding backend: torch device (cpu, cuda).")
    quantize: bool = Field(
        True,
        description="Embedding backend: int8 dynamic quantization (per output channel) when "
        "the device is cpu (about 2x faster; ignored on GPU).",
    )
    threshold: float = Field(
        0.1,
        ge=-1.0,
        le=1.0,
        description="Embedding backend: similarity below which the "
        "conversation is routed to 'other'.",
    )
    window_turns: int = Field(
        3, ge=1, le=64, description="How many recent user turns the classifier sees."
    )
    # vLLM engine arguments
    dtype: str = Field("auto", description="vLLM: weight dtype (auto, bfloat16, float16, float32).")
    max_model_len: int = Field(
        4096,
        ge=256,
        description="vLLM: context length in tokens (remote: the server's, sizes the window).",
    )
    prompt_token_budget: int = Field(
        0, ge=0, description="vLLM: max prompt tokens (0 = max_model_len minus a margin)."
    )
    gpu_memory_utilization: float = Field(
        0.3, gt=0.0, le=1.0, description="vLLM: fraction of GPU memory the engine may use."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: tensor parallel GPUs.")
    enforce_eager: bool = Field(False, description="vLLM: disable CUDA graphs (faster start).")
    enable_prefix_caching: bool = Field(True, description="vLLM: reuse the fixed prompt prefix.")
    kv_cache_bytes: int = Field(
        0, ge=0, description="vLLM on CPU: KV-cache size in bytes (0 = 512 MiB on CPU)."
    )
    max_num_seqs: int = Field(
        0, ge=0, description="vLLM: most sequences per engine step (0 = vLLM's default)."
    )
    max_num_batched_tokens: int = Field(
        0, ge=0, description="vLLM: most tokens per engine step (0 = vLLM's default)."
    )
    vllm_metrics: bool = Field(
        False, description="vLLM: collect vLLM's own stats and export them (vllm:*) on /metrics."
    )
    exit_on_engine_death: bool = Field(
        True,
        description="vLLM: exit the process (non-zero) when the engine dies, so the "
        "orchestrator restarts it; /ready turns 503 either way.",
    )
    health_interval_s: float = Field(
        5.0, ge=0.0, description="vLLM: seconds between engine health checks (0 = off)."
    )
    revision: str | None = Field(None, description="vLLM: model revision (branch, tag, commit).")
    download_dir: str | None = Field(None, description="vLLM: weights cache directory.")
    timeout_s: float = Field(
        5.0, gt=0.0, description="Per-request classification timeout in seconds."
    )
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="remote: the OpenAI-compatible server's base URL (ending in /v1).",
    )
    api_key_env: str | None = Field(
        None, description="remote: name of the environment variable holding its API key."
    )
    guided: Literal["structured_outputs", "guided_choice", "none"] = Field(
        "structured_outputs",
        description="remote: how the answer is constrained to the route names: vLLM's "
        "'structured_outputs', older vLLM's 'guided_choice', or 'none' (parse only).",
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="remote: retries on connect errors, 429 and 503."
    )
    startup_timeout_s: float = Field(
        120.0, gt=0.0, description="remote: how long startup waits for the server's model."
    )
    on_error: Literal["fallback", "error"] = Field(
        "fallback",
        description="When the classifier fails or times out: route to the fallback model "
        "(reason 'fallback') or answer 503.",
    )


class AutoSettings(BaseModel):
    """AutoStrategy: encoder and artifact."""

    encoder: str = Field(
        "minilm", description="Encoder: 'minilm' or 'open_clip:<model>' (e.g. open_clip:ViT-B-32)."
    )
    pretrained: str | None = Field(
        None, description="open_clip pretrained tag or local checkpoint path (None = random)."
    )
    device: str = Field("cpu", description="Torch device for the encoder and MLP.")
    autocast: Literal["off", "bf16", "fp16"] = Field(
        "bf16",
        description="open_clip on CUDA: run the encoders under autocast in this dtype "
        "(ignored on CPU).",
    )
    device_images: bool = Field(
        True,
        description="open_clip on CUDA: decode JPEGs (nvJPEG), resize and normalise images "
        "on the device; off = PIL on the CPU.",
    )
    cuda_graphs: bool = Field(
        True,
        description="open_clip on CUDA: replay both towers from CUDA graphs captured at "
        "start, one per batch size 1, 2, 4, ... up to batch.max_size (far fewer kernel "
        "launches at small batches); off = eager.",
    )
    artifact: str | None = Field(
        None, description="Router artifact directory; overrides 'auto.artifact' in the config."
    )
    timeout_s: float = Field(
        5.0, gt=0.0, description="Per-request scoring timeout in seconds (queue wait included)."
    )
    on_error: Literal["fallback", "error"] = Field(
        "fallback",
        description="When scoring fails or times out: route to the fallback model "
        "(reason 'fallback') or answer 503.",
    )


class BatchSettings(BaseModel):
    """Micro-batching in front of encoders."""

    max_size: int = Field(32, ge=1, le=1024, description="Largest batch sent to an encoder.")
    window_ms: float = Field(
        2.0,
        ge=0.0,
        le=1000.0,
        description="Under load only (requests queued while a batch ran): how long the "
        "next batch may wait to fill; an idle encoder starts on a request at once.",
    )
    queue_size: int = Field(
        1024, ge=1, description="Pending encode requests before new ones get 429."
    )


class EncoderSettings(BaseModel):
    """How sentence encoders run (the intent embedding backend, the auto strategy's minilm)."""

    runtime: Literal["onnx", "torch"] = Field(
        "onnx",
        description="Sentence encoder runtime on CPU: onnx (ONNX Runtime; the graph and its "
        "int8 version are exported from the weights once and cached) or torch. On CUDA "
        "devices encoders always run on torch.",
    )
    cache_dir: str = Field(
        "~/.cache/llm-router/onnx",
        description="Where ONNX exports are kept, one entry per weights hash (build it "
        "beforehand with 'llm-router export-onnx'; it must be writable when an entry is "
        "missing).",
    )


class SessionSettings(BaseModel):
    """Session stickiness (:mod:`strategies.sessions`): one in-memory store per process."""

    policy: Literal["off", "sticky", "upgrade_only"] = Field(
        "off",
        description="With a session id (x-session-id header or router.session_id): off = "
        "route every turn afresh; sticky = keep the session's model while it can answer; "
        "upgrade_only = move only to a stronger (higher cost) model or to a vision model "
        "when a turn needs one, never back down.",
    )
    max_sessions: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Most sessions remembered per worker process; the least recently used "
        "is forgotten first.",
    )
    ttl_s: float = Field(
        1800.0,
        gt=0.0,
        le=7 * 24 * 3600.0,
        description="A session is forgotten this many seconds after its last turn.",
    )
