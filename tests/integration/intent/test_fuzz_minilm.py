"""A short Schemathesis run against the real embedding strategy (packaged MiniLM): the
fuzzed texts reach the encoder, so odd unicode, huge or empty strings are exercised."""

from __future__ import annotations

import pytest

from app.server.factory import create_app
from tests.fuzzing import fuzz_app
from tests.helpers import make_settings

EXAMPLES_PER_MODE = 20


@pytest.mark.embedding
@pytest.mark.slow
def test_fuzzed_requests_on_minilm_never_5xx() -> None:
    app = create_app(make_settings(strategy="intent", log_level="warning"))
    report = fuzz_app(
        app, max_examples=EXAMPLES_PER_MODE, models=app.state.router.config.model_names
    )
    print(report.summary())
    assert not report.failures, report.summary()
    assert report.by_status.get(200, 0) >= 3, report.summary()
