"""Schemathesis fuzzing of the whole API (fixed seed and budget) on the FakeStrategy:
no input, valid or not, gets a 5xx, and every error is OpenAI's error shape."""

from __future__ import annotations

import pytest

from app.server.factory import create_app
from tests.fuzzing import fuzz_app
from tests.helpers import make_settings

# ~250 requests; ~30 s on a 2-core machine (generation dominates, not the app)
EXAMPLES_PER_MODE = 120


@pytest.mark.slow
def test_fuzzed_requests_never_5xx_and_errors_are_openai_shaped() -> None:
    app = create_app(make_settings(log_level="warning"))
    report = fuzz_app(
        app, max_examples=EXAMPLES_PER_MODE, models=app.state.router.config.model_names
    )
    print(report.summary())
    assert not report.failures, report.summary()
    assert report.cases >= EXAMPLES_PER_MODE * 2
    assert report.by_status.get(200, 0) >= 20, report.summary()  # valid requests got through
