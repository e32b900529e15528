"""The docs stay honest: relative links and #anchors resolve, every docs page is linked from
the README (and links back), the README stays short, its numbers are the docs' measured
ones, and what its examples show is what the product answers. Examples are read from the
README text, so an edited example is what gets checked."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import ROOT, jpeg_bytes, server_process

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
VARYING = {"latency_ms", "created"}  # measured or clock values: shown, never compared
SERVER_ENV = {"ROUTER_STRATEGY": "intent", "ROUTER_INTENT__BACKEND": "embedding"}
SERVER_ENV |= {"ROUTER_MODE": "recommend", "ROUTER_CONFIG": "", "ROUTER_API_KEYS": ""}


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """Markdown without code blocks and inline code (neither holds links)."""
    return re.sub(r"`[^`]*`", "", FENCE.sub("", text))


def targets(page: Path) -> list[str]:
    return LINK.findall(prose(read(page)))


def anchors(page: Path) -> Iterator[str]:
    """GitHub's: lowercase, punctuation but - and _ dropped, spaces to -, repeats -1, -2..."""
    seen: dict[str, int] = {}
    for line in FENCE.sub("", read(page)).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
            yield f"{slug}-{seen[slug]}" if seen[slug] else slug


def resolves(page: Path, target: str) -> bool:
    name, _, anchor = target.partition("#")
    dest = (page.parent / name).resolve() if name else page
    if not dest.exists():
        return False
    return not anchor or dest.suffix != ".md" or anchor in set(anchors(dest))


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    external = re.compile(r"[a-z][a-z+.-]*:")  # http:, https:, mailto:
    assert [t for t in targets(page) if not external.match(t) and not resolves(page, t)] == []


def test_every_docs_page_is_linked_from_the_readme_and_links_back() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in targets(README)}
    assert PAGES
    assert [p.name for p in PAGES if p.resolve() not in linked] == []
    assert [p.name for p in PAGES if "../README.md" not in targets(p)] == []


def test_documented_bench_commands_name_existing_modules() -> None:
    text = " ".join(" ".join(read(p).split()) for p in [README, *PAGES])
    modules = set(re.findall(r"python -m (bench(?:\.\w+)+)", text))
    assert modules
    assert sorted(m for m in modules if not (ROOT / f"{m.replace('.', '/')}.py").exists()) == []


def test_readme_is_short() -> None:
    assert len(read(README).splitlines()) <= 300


def test_readme_numbers_are_the_docs_measured_numbers() -> None:
    """The README's prose cites results; each number must appear on a docs page."""
    docs = set(NUMBER.findall(" ".join(read(p) for p in PAGES)))
    assert sorted(set(NUMBER.findall(prose(read(README)))) - docs) == []


def test_shipped_default_table_matches_the_default_config() -> None:
    text = read(ROOT / "docs" / "configuration.md")
    section = text.split("## The shipped default config", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\w+) \| [^|]+ \| (\S+) \|$", section, re.M))
    rows.pop("intent")  # the header row
    config = load_routing_config(DEFAULT_CONFIG)
    assert rows == {i.name: i.model for i in config.intents}
    shown = re.findall(r"([\w.-]+) (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", " ".join(section.split()))
    assert {name: (float(cost), float(threshold)) for name, cost, threshold in shown} == {
        m.name.split("/")[-1]: (m.cost, m.threshold) for m in config.models
    }


def assert_shown(shown: Any, real: Any, where: str = "") -> None:
    """Shown values are the server's: numbers to the digits shown, "…" ends a prefix."""
    if isinstance(shown, dict):
        for key in shown.keys() - VARYING:
            assert isinstance(real, dict) and key in real, f"{where}.{key} missing"
            assert_shown(shown[key], real[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(real, list) and len(real) == len(shown), where
        for i, (a, b) in enumerate(zip(shown, real, strict=True)):
            assert_shown(a, b, f"{where}[{i}]")
    elif isinstance(shown, Decimal):
        digits = -int(shown.as_tuple().exponent)
        assert round(real, digits) == float(shown), f"{where}: README {shown}, server {real}"
    elif isinstance(shown, str) and "…" in shown:
        assert real.startswith(shown.split("…")[0]), where
    else:
        assert real == shown, f"{where}: README {shown!r}, server {real!r}"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with server_process(SERVER_ENV) as url:
        yield url


@pytest.mark.embedding
def test_readme_curl_example_shows_what_the_server_answers(base: str) -> None:
    blocks = FENCE.findall(read(README))
    i = next(i for i, (lang, body) in enumerate(blocks) if lang == "bash" and "curl " in body)
    path = re.search(r"http://127\.0\.0\.1:8000(/\S+)", blocks[i][1])
    data = re.search(r"-d '([^']*)'", blocks[i][1])
    assert path and data, "the README's curl example lost its URL or -d body"
    shown = next(body for lang, body in blocks[i + 1 :] if lang == "json")
    headers = {"content-type": "application/json"}
    resp = httpx.post(base + path[1], content=data[1], headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    assert_shown(json.loads(shown, parse_float=Decimal), resp.json())


@pytest.mark.embedding
def test_readme_openai_example_prints_what_its_comments_say(
    base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = next(b for lang, b in FENCE.findall(read(README)) if lang == "python" and "OpenAI(" in b)
    for name in re.findall(r'open\("([^"]+)"', code):  # the image file it reads
        (tmp_path / name).write_bytes(jpeg_bytes(64, 48))
    monkeypatch.chdir(tmp_path)
    expected = re.findall(r"^print\(.*\)\s+#\s*(.+?)\s*$", code, re.M)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8000", base), "README.md", "exec"), {})
    assert expected and out.getvalue().splitlines() == expected


@pytest.mark.embedding
def test_readme_typo_example_is_the_servers_error(base: str) -> None:
    shown = r"a typo is a (\d{3}) `(\w+)` whose `param` names the key \(e\.g\. `"
    match = re.search(shown + r"(router\.(\w+)\.([^`]+))`\)", " ".join(read(README).split()))
    assert match, "the README's per-request typo example changed; update this test"
    status, code, param, key, name = match.groups()
    body = {"messages": [{"role": "user", "content": "hi"}], "router": {key: {name: 1.0}}}
    resp = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
    error = resp.json()["error"]
    assert (resp.status_code, error["code"], error["param"]) == (int(status), code, param)
