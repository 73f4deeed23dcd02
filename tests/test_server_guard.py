"""Other web sites cannot use a visitor's browser against the server (issue 22 items 4, 12), on
a real uvicorn server: untrusted Host names (DNS rebinding), cross-site form posts and no-cors
uploads, JSON bodies sent as other types; and the page's security headers."""
from __future__ import annotations

import httpx
import pytest

from jobs.config import Settings
from server import create_app
from service.guard import BrowserPolicy, same_origin
from tests.live_server import LiveServer

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("guard")
    app = create_app(Settings(workdir=workdir, models_dir=workdir / "no-weights"),
                     browser_policy=BrowserPolicy(allowed_origins=("https://studio.example",)))
    with LiveServer(app) as live:
        yield live


def test_a_host_name_not_allowed_is_refused_for_reads_and_writes(server):
    """DNS rebinding: evil.example resolving to this server. Before: any Host was served."""
    for method, path in (("GET", "/jobs/" + "0" * 32), ("GET", "/health"), ("POST", "/jobs/detect-faces")):
        response = httpx.request(method, server.url + path, headers={"Host": "evil.example"}, json={})
        assert response.status_code == 400, (path, response.text)
        assert "LIPSYNC_ALLOWED_HOSTS" in response.json()["error_message"]
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        assert httpx.get(server.url + "/health", headers={"Host": host}).status_code == 200


def test_a_cross_site_form_post_creates_no_job(server):
    """A <form enctype=text/plain> on another origin. Before: 202, a job was created."""
    form = httpx.post(server.url + "/jobs/detect-faces", content=b'{"video_url": "https://x.example/v.mp4", "a":"="}',
                      headers={"Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert form.status_code == 403 and "another site" in form.json()["error_message"]
    opaque = httpx.post(server.url + "/jobs/detect-faces", json={}, headers={"Origin": "null"})
    assert opaque.status_code == 403


def test_a_no_cors_upload_from_another_site_is_refused(server, data_dir):
    """fetch(url, {mode: "no-cors", body: blob}) from another origin. Before: 201."""
    response = httpx.post(server.url + "/uploads", params={"kind": "video"},
                          content=(data_dir / "video" / "d20.mp4").read_bytes(),
                          headers={"Content-Type": "video/mp4", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403, response.text
    site_only = httpx.delete(server.url + "/jobs/" + "0" * 32, headers={"Sec-Fetch-Site": "same-site"})
    assert site_only.status_code == 403


def test_a_json_endpoint_needs_application_json(server):
    for path in ("/detect-faces", "/lipsync", "/jobs/detect-faces", "/jobs/lipsync"):
        response = httpx.post(server.url + path, content=b'{"video_url": "https://x.example/v.mp4"}',
                              headers={"Content-Type": "text/plain"})
        assert response.status_code == 415, (path, response.text)
        assert "Content-Type: application/json" in response.json()["error_message"]
    bare = httpx.post(server.url + "/jobs/detect-faces", content=b"{}")  # no Content-Type at all
    assert bare.status_code == 415


def test_the_own_page_an_allowed_origin_and_plain_clients_get_through(server):
    """Same-origin writes (the review page), a configured origin, and curl-like clients reach the
    handler: the missing video_url is its 422, not the guard's 403."""
    own = f"http://127.0.0.1:{server.port}"
    for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"},
                    {"Origin": "https://studio.example", "Sec-Fetch-Site": "cross-site"},
                    {}):
        response = httpx.post(server.url + "/jobs/detect-faces", json={"sample_fps": 3}, headers=headers)
        assert response.status_code == 422 and "video_url" in response.json()["error_message"], headers


def test_the_page_says_how_it_may_be_framed_and_loaded(server):
    """Before: GET / sent no CSP, X-Frame-Options or X-Content-Type-Options."""
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    health = httpx.get(server.url + "/health")
    assert health.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in health.headers


def test_policy_from_env_and_origin_matching():
    policy = BrowserPolicy.from_env({"LIPSYNC_ALLOWED_HOSTS": "api.example.com, *.studio.example",
                                     "LIPSYNC_ALLOWED_ORIGINS": "https://App.example/"})
    assert policy.allowed_hosts == ("api.example.com", "*.studio.example")
    assert policy.allowed_origins == ("https://app.example",)
    assert BrowserPolicy.from_env({}).allowed_hosts == ("localhost", "127.0.0.1", "::1")
    with pytest.raises(ValueError, match="LIPSYNC_ALLOWED_ORIGINS"):
        BrowserPolicy.from_env({"LIPSYNC_ALLOWED_ORIGINS": "app.example"})
    with pytest.raises(ValueError, match="LIPSYNC_ALLOWED_HOSTS"):
        BrowserPolicy.from_env({"LIPSYNC_ALLOWED_HOSTS": "a*.example"})
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000") and same_origin("https://a.example", "a.example")
    assert same_origin("http://[::1]:8000", "[::1]:8000")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000") and not same_origin(EVIL, "127.0.0.1:8000")
