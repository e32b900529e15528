"""The playground in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium; no browser download), against real router processes on loopback.

Recommend mode runs the offline default router (MiniLM intents); proxy mode streams the
chosen model's answer from a local upstream. Screenshots (desktop and phone widths) go to
``$LLM_ROUTER_TEST_OUTPUT`` (default ``.test-output/``) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, png_bytes, server_process
from tests.upstream_server import UpstreamServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OUTPUT = Path(os.environ.get("LLM_ROUTER_TEST_OUTPUT", ROOT / ".test-output"))
VISION_MODEL = "nvidia/nemotron-nano-12b-v2-vl"
MODELS = {"gpt-5-chat", "nvidia/nvidia-nemotron-nano-9b-v2", VISION_MODEL}


def _browser(width: int = 1280, height: int = 1000, *, phone: bool = False) -> Any:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "headless browser tests need Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver (make test installs them as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    if phone:  # a real phone viewport (a desktop window cannot be narrower than ~500 px)
        metrics = {"width": width, "height": height, "pixelRatio": 2, "touch": True}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _wait(driver: Any, check: Callable[[Any], Any], timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)


def _text(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def _type_latest(driver: Any, text: str) -> None:
    area = driver.find_elements("css selector", "#conversation .turn .text")[-1]
    area.clear()
    area.send_keys(text)


def _route(driver: Any, previous: int) -> None:
    driver.find_element("id", "send").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#history li")) > previous)


def _screenshot(driver: Any, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    with server_process({"ROUTER_LOG_LEVEL": "warning"}, timeout=300) as url:
        yield url


@pytest.fixture
def driver() -> Iterator[Any]:
    browser = _browser()
    try:
        yield browser
    finally:
        browser.quit()


def test_playground_routes_text_images_and_shows_errors(
    router_url: str, driver: Any, tmp_path: Path
) -> None:
    driver.get(f"{router_url}/")  # the root redirects here
    _wait(driver, lambda d: "Strategy intent" in _text(d, "service-info"))
    assert driver.current_url.endswith("/playground")

    # a text conversation: a configured model, its intent and per-intent scores
    _type_latest(driver, "Prove that the square root of 2 is irrational, step by step.")
    _route(driver, 0)
    assert _text(driver, "chosen-model") in MODELS
    scores = driver.find_elements("css selector", "#scores li")
    assert len(scores) >= 3
    assert "Intent" in _text(driver, "decision")

    # the live panel reads /metrics: the decision shows up by model
    chosen = _text(driver, "chosen-model")
    _wait(driver, lambda d: chosen in _text(d, "live-models"))
    _wait(driver, lambda d: "p50" in _text(d, "live-latency"))

    # attach a generated image: a vision-capable model is chosen (sent with Ctrl+Enter)
    picture = tmp_path / "photo.png"
    picture.write_bytes(png_bytes(320, 200, (30, 140, 60)))
    driver.find_element("css selector", "#conversation .turn .files").send_keys(str(picture))
    _wait(driver, lambda d: d.find_elements("css selector", "#conversation .thumbs img"))
    _type_latest(driver, "What is in this picture?")
    from selenium.webdriver.common.keys import Keys

    area = driver.find_elements("css selector", "#conversation .turn .text")[-1]
    area.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(driver, lambda d: len(d.find_elements("css selector", "#history li")) > 1)
    assert _text(driver, "chosen-model") == VISION_MODEL
    request = driver.find_element("id", "raw-request").get_attribute("textContent")
    assert '"image_url"' in request and "data:image/jpeg;base64," in request

    # the copyable snippets describe the same request
    driver.find_element("css selector", "#snippets summary").click()
    curl = driver.find_element("id", "curl-snippet").get_attribute("value")
    python = driver.find_element("id", "python-snippet").get_attribute("value")
    assert f"{router_url}/v1/chat/completions" in curl and "image_url" in curl
    assert "OpenAI(base_url=" in python and "image_url" in python

    _screenshot(driver, "playground-desktop.png")

    # a bad request (every model excluded): the API's error shown in words
    for box in driver.find_elements("css selector", "input.exclude"):
        box.click()
    driver.find_element("id", "send").click()
    _wait(driver, lambda d: d.find_element("id", "error").is_displayed())
    error = _text(driver, "error")
    assert "400" in error and "eligible" in error
    assert len(driver.find_elements("css selector", "#history li")) == 2


def test_playground_shows_why_earlier_images_are_omitted(
    router_url: str, driver: Any, tmp_path: Path
) -> None:
    driver.get(f"{router_url}/playground")
    _wait(driver, lambda d: "Strategy intent" in _text(d, "service-info"))
    picture = tmp_path / "car.png"
    picture.write_bytes(png_bytes(320, 200, (200, 30, 30)))
    driver.find_element("css selector", "#conversation .turn .files").send_keys(str(picture))
    _wait(driver, lambda d: d.find_elements("css selector", "#conversation .thumbs img"))
    _type_latest(driver, "What is in this picture?")
    driver.find_element("id", "add-assistant").click()
    _type_latest(driver, "A red car parked on a quiet street.")
    driver.find_element("id", "add-user").click()
    _type_latest(driver, "Thanks! Now write a haiku about autumn")
    _route(driver, 0)
    # a text model answers; the decision says why and that the picture becomes a marker
    assert _text(driver, "chosen-model") in MODELS - {VISION_MODEL}
    decision = _text(driver, "decision")
    assert "images_omitted" in decision and "text markers" in decision
    assert "Needs vision" in decision and "Eligible intents" in decision
    _wait(driver, lambda d: "images_omitted" in _text(d, "live-reasons"))
    # the follow-up that asks about the picture: the vision model, and why
    _type_latest(driver, "what colour is the car in the photo?")
    _route(driver, 1)
    assert _text(driver, "chosen-model") == VISION_MODEL
    assert "image_reference" in _text(driver, "decision")
    assert "asks about an earlier image" in _text(driver, "decision")


def test_playground_fits_a_phone_screen(router_url: str) -> None:
    phone = _browser(390, 844, phone=True)
    try:
        phone.get(f"{router_url}/playground")
        _wait(phone, lambda d: "Strategy intent" in _text(d, "service-info"))
        _type_latest(phone, "hey, how is your day going?")
        _route(phone, 0)
        assert _text(phone, "chosen-model") in MODELS
        # one column: nothing wider than the screen
        overflow = phone.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        phone.execute_script("document.getElementById('decision-title').scrollIntoView()")
        _screenshot(phone, "playground-phone.png")
    finally:
        phone.quit()


@pytest.fixture(scope="module")
def proxy_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with UpstreamServer("upstream") as upstream:
        config = {
            "models": [
                {"name": "talker", "base_url": upstream.base_url, "upstream_model": "talker"},
                {"name": "eyes", "vision": True, "base_url": upstream.base_url},
            ]
        }
        path = Path(tmp_path_factory.mktemp("playground")) / "routing.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {
            "ROUTER_MODE": "proxy",
            "ROUTER_STRATEGY": "tests.fakes:FakeStrategy",
            "ROUTER_CONFIG": str(path),
            "ROUTER_LOG_LEVEL": "warning",
            "ROUTER_API_KEYS": "playground-key",
        }
        with server_process(env, timeout=60) as url:
            yield url


def test_proxy_mode_streams_the_answer_with_an_api_key(proxy_router: str, driver: Any) -> None:
    driver.get(f"{proxy_router}/playground")
    _wait(driver, lambda d: d.find_element("id", "auth-row").is_displayed())
    key = driver.find_element("id", "api-key")
    key.send_keys("playground-key")
    key.send_keys("\t")  # the change event reloads the config with the key
    _wait(driver, lambda d: "proxy mode" in _text(d, "service-info"))
    _type_latest(driver, "tell me a story about routers")
    _route(driver, 0)
    assert _text(driver, "chosen-model") == "talker"
    _wait(driver, lambda d: "upstream says: tell me a story about routers" in _text(d, "answer"))
