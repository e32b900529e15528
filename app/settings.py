"""Service settings from environment variables (prefix ``ROUTER_``, nested with ``__``).

Every field has a description and a default that works offline. The strategy sections
(``intent``, ``auto``, ``batch``, ``encoder``) are defined beside the strategies
(:mod:`strategies.settings`); this module adds the service's own and reads them all.
``.env.example`` lists them all; ``tests/unit/server/test_settings.py`` keeps that file in sync
with these classes. A ``.env`` file in the working directory is read too; real
environment variables win.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from strategies.settings import (
    AutoSettings,
    BatchSettings,
    EncoderSettings,
    IntentSettings,
    SessionSettings,
)

DEFAULT_CONFIG = Path(__file__).with_name("default_config.yaml")
#: read from the working directory; tests switch it off (tests/conftest.py)
ENV_FILE = ".env"


class LimitSettings(BaseModel):
    """Input limits: anything past them is a 4xx, never a crash."""

    max_body_bytes: int = Field(25 * 1024**2, ge=1024, description="Largest request body (413).")
    max_messages: int = Field(1000, ge=1, description="Most messages in one request.")
    max_images: int = Field(8, ge=0, description="Most images in one request.")
    max_image_bytes: int = Field(
        10 * 1024**2, ge=1024, description="Largest encoded image, in bytes."
    )
    max_image_pixels: int = Field(
        25_000_000,
        ge=1,
        description="Largest image, in pixels (width x height); encoders use a few "
        "hundred pixels a side, so 25 MP is plenty.",
    )
    image_decode_threads: int = Field(
        2, ge=1, le=64, description="Worker threads that decode images (off the event loop)."
    )
    image_pixels_in_flight: int = Field(
        64_000_000,
        ge=1,
        description="Most pixels being decoded at once across all requests (memory budget; "
        "at least max_image_pixels).",
    )
    image_wait_s: float = Field(
        5.0, gt=0.0, description="How long an image waits for the pixel budget before 429."
    )
    max_concurrency: int = Field(
        256, ge=1, description="Requests handled at once; more wait in the admission queue."
    )
    queue_timeout_s: float = Field(
        2.0,
        ge=0.0,
        description="How long a request may wait for a slot before 429 (0 = reject at once).",
    )
    max_queued: int = Field(
        1024, ge=0, description="Requests waiting for a slot before new ones get 429 at once."
    )

    @model_validator(mode="after")
    def _budget_fits_one_image(self) -> LimitSettings:
        if self.image_pixels_in_flight < self.max_image_pixels:
            raise ValueError(
                "ROUTER_LIMITS__IMAGE_PIXELS_IN_FLIGHT must be at least "
                "ROUTER_LIMITS__MAX_IMAGE_PIXELS (else an allowed image could never decode)"
            )
        return self


class ImageFetchSettings(BaseModel):
    """Fetching http(s) image URLs (off by default: only data: URLs are accepted)."""

    enabled: bool = Field(False, description="Allow http(s) image URLs to be fetched.")
    timeout_s: float = Field(
        5.0, gt=0.0, description="Total deadline for one image fetch (DNS, redirects, body)."
    )
    request_timeout_s: float = Field(
        10.0, gt=0.0, description="Total deadline for all image fetches of one request."
    )
    max_parallel: int = Field(
        4, ge=1, le=64, description="Image fetches of one request run at most this many at once."
    )
    max_redirects: int = Field(
        3, ge=0, le=10, description="Redirects followed per fetch (each hop is re-checked)."
    )
    allow_private: bool = Field(
        False,
        description="Allow non-global addresses (loopback, private, CGNAT, link-local; "
        "tests only, never in production).",
    )


class ProxySettings(BaseModel):
    """Proxy mode: how upstreams are called."""

    timeout_s: float = Field(60.0, gt=0.0, description="Default upstream read timeout.")
    connect_timeout_s: float = Field(5.0, gt=0.0, description="Upstream connect timeout.")
    max_attempts: int = Field(3, ge=1, description="Most upstreams tried for one request.")
    total_timeout_s: float = Field(
        120.0, gt=0.0, description="Time budget for all attempts before the first byte."
    )
    max_connections: int = Field(512, ge=1, description="Pooled upstream connections.")
    pool_timeout_s: float = Field(
        5.0,
        gt=0.0,
        description="Wait for a free pooled connection before answering 503 proxy_saturated.",
    )
    connect_retries: int = Field(
        1, ge=0, description="Extra tries of a failed upstream connect (nothing was sent)."
    )
    keepalive_expiry_s: float = Field(
        4.0,
        ge=0.0,
        description="Close idle upstream connections after this long (keep it below the "
        "upstreams' idle timeout, e.g. 5 s for nginx/uvicorn).",
    )
    image_marker: str = Field(
        "[image omitted]",
        min_length=1,
        max_length=200,
        description="Text part that replaces each image part of the body sent to a model "
        "that cannot see images (a conversation whose earlier turns hold images).",
    )


class CostSettings(BaseModel):
    """Cost accounting in proxy mode (prices come from the routing config; docs/cost.md)."""

    baseline_model: str = Field(
        "",
        description="The model savings are measured against: llm_router_baseline_cost_usd_total "
        "counts what each answer's tokens would have cost on it (empty = the most expensive "
        "configured text model). Must name a configured model; with prices in the config, "
        "one that has prices.",
    )


class CaptureSettings(BaseModel):
    """Traffic capture for the learning loop (off by default: it stores user prompts)."""

    path: Path | None = Field(
        None,
        description="Directory for captured requests (JSONL, one file per worker, rotated by "
        "size, mode 0600); unset = no capture. The rows hold user prompts and images.",
    )
    sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of requests captured (0-1), drawn per request."
    )
    images: Literal["store", "drop"] = Field(
        "store",
        description="store: each image once under <path>/images/<sha256>.<ext>, referenced "
        "from the row; drop: replaced by a text marker.",
    )
    max_file_bytes: int = Field(
        64 * 1024**2, ge=4096, description="Rotate to a new capture file past this size."
    )
    queue_size: int = Field(
        10_000,
        ge=1,
        description="Rows waiting for the writer thread; past it rows are dropped and "
        "counted (llm_router_capture_dropped_total), never a slower request.",
    )

    @field_validator("path", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value == "" else value


class Settings(BaseSettings):
    """All llm-router settings."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTER_",
        env_nested_delimiter="__",
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
    )

    strategy: str = Field(
        "intent", description="Routing strategy: intent or auto (or 'module:Class')."
    )
    mode: Literal["recommend", "proxy"] = Field(
        "recommend", description="recommend: answer with the model name; proxy: forward."
    )
    config: Path = Field(DEFAULT_CONFIG, description="Routing config YAML file.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on.")
    log_format: Literal["json", "console"] = Field("json", description="Log format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_prompts: bool = Field(
        False, description="Log prompt text in decision events (user data: off by default)."
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="Intra-op threads per worker for encoders, torch and ONNX Runtime "
        "alike (0 = usable cores - 1 with one worker, leaving a core for HTTP; usable "
        "cores / workers with several).",
    )
    workers: Annotated[int, Field(ge=1, le=512)] | Literal["auto"] = Field(
        1,
        description="Worker processes serving one port ('auto' = usable CPU cores). Not "
        "with the in-process vLLM backend: one process per GPU, or the remote backend.",
    )
    drain_timeout_s: float = Field(
        10.0,
        ge=0.0,
        le=3600.0,
        description="On SIGTERM, how long requests in flight may finish before the server "
        "closes them (keep it below Kubernetes' terminationGracePeriodSeconds).",
    )
    playground: bool = Field(
        True, description="Serve the playground page at /playground (and redirect / there)."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer tokens, comma separated (empty = no auth).",
    )
    intent: IntentSettings = Field(default_factory=IntentSettings)  # type: ignore[arg-type]
    auto: AutoSettings = Field(default_factory=AutoSettings)  # type: ignore[arg-type]
    batch: BatchSettings = Field(default_factory=BatchSettings)  # type: ignore[arg-type]
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)  # type: ignore[arg-type]
    limits: LimitSettings = Field(default_factory=LimitSettings)  # type: ignore[arg-type]
    image_fetch: ImageFetchSettings = Field(default_factory=ImageFetchSettings)  # type: ignore[arg-type]
    proxy: ProxySettings = Field(default_factory=ProxySettings)  # type: ignore[arg-type]
    cost: CostSettings = Field(default_factory=CostSettings)  # type: ignore[arg-type]
    capture: CaptureSettings = Field(default_factory=CaptureSettings)  # type: ignore[arg-type]
    sessions: SessionSettings = Field(default_factory=SessionSettings)  # type: ignore[arg-type]

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("config", mode="before")
    @classmethod
    def _default_config(cls, value: object) -> object:
        return DEFAULT_CONFIG if value is None or value == "" else value

    @field_validator("strategy")
    @classmethod
    def _strategy_nonempty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("ROUTER_STRATEGY must not be empty (valid: intent, auto)")
        return value.strip()


def load_env_file() -> None:
    """Export the ``.env`` file's variables that the environment does not already set, so
    the upstream API keys the routing config names (``api_key_env``) can live there too."""
    from dotenv import load_dotenv

    path = Settings.model_config.get("env_file")
    if isinstance(path, str | Path) and Path(path).is_file():
        load_dotenv(path, override=False, encoding="utf-8")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
