"""The Gemini captioner against a real local HTTP server standing in for the API."""

from __future__ import annotations

import base64
import json
import logging
import random
from pathlib import Path

import pytest

from aiprod_recipes.captioning.gemini import (
    Backoff,
    GeminiClient,
    GeminiClipError,
    GeminiKeyError,
)
from aiprod_recipes.spec import GeminiCaptioner
from tests.caption_fixtures import FakeGeminiServer, gemini_error

KEY = "AIzaSy-test-SECRET-key-0123456789"
ENV = "AIPROD_TEST_GEMINI_KEY"
CLIP = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4


@pytest.fixture
def server():
    with FakeGeminiServer(caption="Sure! Here is a caption: A dog runs.") as fake:
        yield fake


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY)


def _client(server: FakeGeminiServer, sleeps: list[float], **kw) -> GeminiClient:
    spec = GeminiCaptioner(model="gemini-test", api_key_env=ENV, base_url=server.base_url,
                           max_retries=kw.pop("max_retries", 3), timeout_s=10.0)
    return GeminiClient.from_spec(spec, sleep=sleeps.append, rng=random.Random(0), **kw)


def _either(obj: dict, camel: str, snake: str):
    """The API's JSON accepts both spellings; google-genai sends one or the other."""
    return obj[camel] if camel in obj else obj[snake]


def _assert_key_nowhere(caplog: pytest.LogCaptureFixture, tmp_path: Path, *texts: str) -> None:
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    for text in texts:
        assert KEY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_request_shape_and_answer(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP)
    sleeps: list[float] = []
    client = _client(server, sleeps)
    text = client.caption(clip, "Describe this clip.")
    assert text == "Sure! Here is a caption: A dog runs."
    assert sleeps == []
    [(method, path, headers, body)] = server.requests
    assert method == "POST"
    assert path == "/v1beta/models/gemini-test:generateContent"
    assert headers["x-goog-api-key"] == KEY
    [content] = json.loads(body)["contents"]
    video, instruction = content["parts"]
    inline = _either(video, "inlineData", "inline_data")
    assert _either(inline, "mimeType", "mime_type") == "video/mp4"
    assert base64.urlsafe_b64decode(inline["data"].replace("+", "-").replace("/", "_")) == CLIP
    assert instruction["text"] == "Describe this clip."
    _assert_key_nowhere(caplog, tmp_path, repr(client), str(client))


def test_retries_429_and_503_then_succeeds(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server.replies = [
        (429, gemini_error(429, "Resource has been exhausted", "RESOURCE_EXHAUSTED"),
         {"Retry-After": "0.004"}),
        (503, gemini_error(503, "The model is overloaded", "UNAVAILABLE"), {}),
    ]
    sleeps: list[float] = []
    client = _client(server, sleeps, backoff=Backoff(base_s=0.001, cap_s=0.01, jitter=0.5))
    assert client.caption(CLIP, "Describe.", clip="a.mp4") == "Sure! Here is a caption: A dog runs."
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    assert 0.004 <= sleeps[0] <= 0.01  # the server's Retry-After, within the cap
    assert 0.001 <= sleeps[1] <= 0.002  # base * 2^1 with up to 50 % jitter off
    assert "retry 1/3" in caplog.text and "429" in caplog.text
    _assert_key_nowhere(caplog, tmp_path)


def test_gives_up_after_max_retries(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    busy = (429, gemini_error(429, "quota", "RESOURCE_EXHAUSTED"), {})
    server.replies = [busy] * 5
    sleeps: list[float] = []
    client = _client(server, sleeps, max_retries=2, backoff=Backoff(base_s=0.001, cap_s=0.002))
    with pytest.raises(GeminiClipError, match="gave up after 2 retries") as info:
        client.caption(CLIP, "Describe.", clip="a.mp4")
    assert info.value.clip == "a.mp4" and info.value.status == 429
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert all(s <= 0.002 for s in sleeps)
    _assert_key_nowhere(caplog, tmp_path, str(info.value))


def test_rejected_key_is_a_clear_error_without_the_key(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    # A server (or proxy) that echoes the key back must not leak it through our message.
    server.replies = [(401, gemini_error(401, f"API key not valid: {KEY}", "UNAUTHENTICATED"),
                       {})]
    sleeps: list[float] = []
    with pytest.raises(GeminiKeyError) as info:
        _client(server, sleeps).caption(CLIP, "Describe.")
    message = str(info.value)
    assert f"${ENV}" in message and "rejected" in message and "401" in message
    assert sleeps == [] and len(server.requests) == 1
    assert info.value.__suppress_context__
    _assert_key_nowhere(caplog, tmp_path, message, repr(info.value))


def test_other_client_errors_fail_the_clip_only(server, keyed) -> None:
    server.replies = [(400, gemini_error(400, "Unsupported video", "INVALID_ARGUMENT"), {})]
    with pytest.raises(GeminiClipError, match=r"b\.mp4: HTTP 400") as info:
        _client(server, []).caption(CLIP, "Describe.", clip="b.mp4")
    assert info.value.status == 400 and len(server.requests) == 1


def test_blocked_answer_is_a_clip_error(server, keyed) -> None:
    server.replies = [(200, {"promptFeedback": {"blockReason": "SAFETY"}}, {})]
    with pytest.raises(GeminiClipError, match=r"empty answer.*SAFETY"):
        _client(server, []).caption(CLIP, "Describe.", clip="c.mp4")


def test_missing_key_fails_before_any_request(server, monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    client = _client(server, [])
    with pytest.raises(GeminiKeyError, match=ENV):
        client.check_key()
    with pytest.raises(GeminiKeyError, match=ENV):
        client.caption(CLIP, "Describe.")
    assert server.requests == []


def test_large_clip_goes_through_the_files_api(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    client = _client(server, sleeps, inline_max_bytes=16)
    assert client.caption(CLIP, "Describe.", clip="big.mp4").endswith("A dog runs.")
    routes = [(m, p.split("?")[0]) for m, p, _, _ in server.requests]
    assert routes == [
        ("POST", "/upload/v1beta/files"),
        ("POST", "/upload/session/1"),
        ("GET", "/v1beta/files/clip1"),
        ("POST", "/v1beta/models/gemini-test:generateContent"),
        ("DELETE", "/v1beta/files/clip1"),
    ]
    assert server.requests[1][3] == CLIP
    part = json.loads(server.requests[3][3])["contents"][0]["parts"][0]
    file_data = _either(part, "fileData", "file_data")
    assert _either(file_data, "fileUri", "file_uri").endswith("/v1beta/files/clip1")
    assert sleeps == [1.0]  # one poll while the file was PROCESSING
    _assert_key_nowhere(caplog, tmp_path)


def test_backoff_is_bounded_and_jittered() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(10)]
    assert all(0.5 <= d <= 1.0 for d in delays[:1])
    assert all(d <= 8.0 for d in delays) and max(delays[5:]) >= 4.0
    assert backoff.delay(0, rng, retry_after_s=100.0) == 8.0


def test_unexpected_client_failure_is_a_clip_error(server, keyed, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server.replies = [(200, {"candidates": "not a list"}, {})]
    with pytest.raises(GeminiClipError, match=r"^d\.mp4: ") as info:
        _client(server, []).caption(CLIP, "Describe.", clip="d.mp4")
    _assert_key_nowhere(caplog, tmp_path, str(info.value))
