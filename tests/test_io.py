"""stream/io.py against real local HTTP servers and the real sample media."""
from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from jobs.probe import probe_media
from service.addresses import non_public_reason, redact_url
from service.delivery import UploadPolicy, check_upload_url, upload_file
from service.fetch import FetchPolicy, fetch_to_temp
from stream.errors import FetchError, MediaError, UploadError
from tests.http_servers import (
    FileServer,
    PutReceiver,
    closed_port_url,
    self_signed_cert,
)
from tests.media import write_video

OPEN = FetchPolicy(allow_private_networks=True)
FAST_UPLOAD = UploadPolicy(allow_private_networks=True, attempts=3, backoff_base_s=0.001, backoff_max_s=0.01)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def files(data_dir):
    with FileServer(data_dir) as server:
        yield server


@pytest.fixture
def workdir(tmp_path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


# ------------------------------------------------------------------ fetching real media


def test_fetch_real_mp4_is_byte_identical_and_probes(files, workdir, data_dir):
    path = fetch_to_temp(files.url("video/d20.mp4"), workdir=workdir, policy=OPEN, kind="video")
    assert path.parent == workdir and path.suffix == ".mp4"
    assert _sha(path) == _sha(data_dir / "video" / "d20.mp4")
    info = probe_media(path, "video")
    assert (info.width, info.height) == (480, 480)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(7.0, abs=0.1)
    assert info.has_video and info.has_audio
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.frame_count == 175


def test_fetch_real_wav_by_host_name_keeps_host_header(files, workdir, data_dir):
    url = files.url("audio/yongen.wav", host="localhost")
    path = fetch_to_temp(url, workdir=workdir, policy=OPEN, kind="audio")
    assert _sha(path) == _sha(data_dir / "audio" / "yongen.wav")
    # the connection is pinned to the checked IP, but the server still sees the name
    assert files.requests[-1].headers["host"] == f"localhost:{files.port}"
    info = probe_media(path, "audio")
    assert info.has_audio and not info.has_video
    assert info.sample_rate == 48000 and info.audio_codec == "pcm_s16le"
    assert info.duration_s == pytest.approx(8.0, abs=0.01)


def test_fetch_follows_relative_redirect(files, workdir, data_dir):
    url = files.redirect_url("/video/d11.mp4")
    path = fetch_to_temp(url, workdir=workdir, policy=OPEN, kind="video")
    assert _sha(path) == _sha(data_dir / "video" / "d11.mp4")
    assert [r.path.split("?")[0] for r in files.requests] == ["/redirect", "/video/d11.mp4"]


def test_probe_real_image(data_dir):
    info = probe_media(data_dir / "image" / "d8.jpg", "image")
    with Image.open(data_dir / "image" / "d8.jpg") as image:
        assert (info.width, info.height) == image.size
    assert info.container == "JPEG" and not info.has_video


# ------------------------------------------------------------------ HTTP failures


def test_404_names_the_fix_and_leaves_no_temp_file(files, workdir):
    with pytest.raises(FetchError) as err:
        fetch_to_temp(files.url("video/nope.mp4"), workdir=workdir, policy=OPEN, kind="video")
    message = str(err.value)
    assert message.startswith("video_url http://127.0.0.1:") and "HTTP 404" in message
    assert "presigned" in message
    assert err.value.status_code == 422
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "code, expected, http_status",
    [(403, "presigned URLs expire", 422), (500, "the server holding the file failed", 502)],
)
def test_error_statuses(files, workdir, code, expected, http_status):
    with pytest.raises(FetchError, match=f"answered HTTP {code}") as err:
        fetch_to_temp(files.url(f"status/{code}"), workdir=workdir, policy=OPEN, kind="audio")
    assert expected in str(err.value) and str(err.value).startswith("audio_url ")
    assert err.value.status_code == http_status
    assert list(workdir.iterdir()) == []


def test_error_names_the_request_field(files, workdir):
    with pytest.raises(FetchError, match=r"^characters\[1\]\.reference_image_url http://.*HTTP 404"):
        fetch_to_temp(
            files.url("image/none.jpg"), workdir=workdir, policy=OPEN, kind="image",
            label="characters[1].reference_image_url",
        )


def test_redirect_limit(files, workdir):
    policy = FetchPolicy(allow_private_networks=True, max_redirects=3)
    with pytest.raises(FetchError, match="redirected more than 3 times"):
        fetch_to_temp(files.url("redirect-loop"), workdir=workdir, policy=policy, kind="video")
    assert len(files.requests) == 4
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("route", ["video/d10.mp4", "nolength/video/d10.mp4"])
def test_size_limit_with_and_without_content_length(files, workdir, route):
    policy = FetchPolicy(allow_private_networks=True, max_bytes=200_000)
    with pytest.raises(FetchError, match="limit") as err:
        fetch_to_temp(files.url(route), workdir=workdir, policy=policy, kind="video")
    assert "195.3 KiB" in str(err.value)
    assert list(workdir.iterdir()) == []


def test_unreachable_input_url(workdir):
    with pytest.raises(FetchError, match="connection refused") as err:
        fetch_to_temp(closed_port_url("v.mp4"), workdir=workdir, policy=OPEN, kind="video")
    assert err.value.status_code == 502
    assert list(workdir.iterdir()) == []


def test_unresolvable_host(workdir):
    with pytest.raises(FetchError, match="does not resolve"):
        fetch_to_temp("http://no-such-host.invalid/v.mp4", workdir=workdir, policy=OPEN, kind="video")


def test_schemes_and_local_files(workdir, data_dir):
    wav = data_dir / "audio" / "sun.wav"
    with pytest.raises(FetchError, match="only http and https"):
        fetch_to_temp("ftp://example.com/a.wav", workdir=workdir, policy=OPEN, kind="audio")
    with pytest.raises(FetchError, match="local paths are accepted only by the CLI"):
        fetch_to_temp(str(wav), workdir=workdir, policy=OPEN, kind="audio")
    local = FetchPolicy(allow_local_files=True)
    assert fetch_to_temp(str(wav), workdir=workdir, policy=local, kind="audio") == wav.resolve()
    assert fetch_to_temp(wav.resolve().as_uri(), workdir=workdir, policy=local, kind="audio") == wav.resolve()
    with pytest.raises(FetchError, match="does not exist"):
        fetch_to_temp(str(data_dir / "audio" / "absent.wav"), workdir=workdir, policy=local, kind="audio")


@pytest.fixture(scope="module")
def localhost_cert(tmp_path_factory):
    try:
        return self_signed_cert(tmp_path_factory.mktemp("tls"), "localhost")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_https_is_pinned_but_verified_against_the_host_name(data_dir, workdir, localhost_cert):
    cert, _key = localhost_cert
    trusted = FetchPolicy(allow_private_networks=True, ca_bundle=str(cert))
    with FileServer(data_dir, tls=localhost_cert) as server:
        url = server.url("audio/sun.wav", host="localhost")
        path = fetch_to_temp(url, workdir=workdir, policy=trusted, kind="audio")
        assert _sha(path) == _sha(data_dir / "audio" / "sun.wav")
        assert server.requests[-1].headers["host"] == f"localhost:{server.port}"
        # the certificate names localhost, not 127.0.0.1: verification must fail for the IP URL
        with pytest.raises(FetchError, match="TLS certificate of 127.0.0.1:.* is not valid"):
            fetch_to_temp(server.url("audio/sun.wav"), workdir=workdir, policy=trusted, kind="audio")
        # and an untrusted certificate is refused even for the right name
        with pytest.raises(FetchError, match="TLS certificate"):
            fetch_to_temp(server.url("audio/sun.wav", host="localhost"), workdir=workdir, policy=OPEN, kind="audio")
    assert [p.name for p in workdir.iterdir()] == [path.name]


def test_https_upload(data_dir, localhost_cert):
    cert, _key = localhost_cert
    policy = UploadPolicy(allow_private_networks=True, ca_bundle=str(cert), attempts=1)
    with PutReceiver(tls=localhost_cert) as sink:
        result = upload_file(data_dir / "audio" / "yongen.wav", sink.url("k.wav", host="localhost"), policy=policy)
        assert sink.stored["/k.wav"] == (data_dir / "audio" / "yongen.wav").read_bytes()
    assert result.status_code == 200 and result.url.startswith("https://localhost:")


# ------------------------------------------------------------------ SSRF guard


def test_loopback_refused_by_default_before_connecting(files, workdir):
    with pytest.raises(FetchError) as err:
        fetch_to_temp(files.url("video/d20.mp4"), workdir=workdir, policy=FetchPolicy(), kind="video")
    assert "loopback address 127.0.0.1" in str(err.value)
    assert "private and loopback URLs are refused" in str(err.value)
    assert files.requests == []
    assert list(workdir.iterdir()) == []


def test_redirect_to_metadata_address_refused(files, workdir):
    # 127.0.0.1 is allowed explicitly, so the first hop passes and the second must be checked
    policy = FetchPolicy(allowed_networks=("127.0.0.1/32",))
    url = files.redirect_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FetchError, match="link-local address 169.254.169.254"):
        fetch_to_temp(url, workdir=workdir, policy=policy, kind="video")
    with pytest.raises(FetchError, match="private address 10.1.2.3"):
        fetch_to_temp(files.redirect_url("http://10.1.2.3/v.mp4"), workdir=workdir, policy=policy, kind="video")
    assert len(files.requests) == 2
    assert list(workdir.iterdir()) == []


def test_decimal_ip_spelling_is_caught(workdir):
    # 2130706433 is 127.0.0.1 written as one number: resolution, not string matching, catches it
    with pytest.raises(FetchError, match="loopback address 127.0.0.1"):
        fetch_to_temp("http://2130706433/v.mp4", workdir=workdir, policy=FetchPolicy(), kind="video")


@pytest.mark.parametrize(
    "address, reason",
    [
        ("10.0.0.1", "private"),
        ("192.168.1.20", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::5", "private"),
        ("100.64.0.1", "shared address space"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_non_public_reason(address, reason):
    assert non_public_reason(address) == reason


def test_redact_url_hides_signature_and_credentials():
    url = "https://user:secret@bucket.s3.amazonaws.com/out/a.mp4?X-Amz-Signature=abc&X-Amz-Expires=60"
    assert redact_url(url) == "https://bucket.s3.amazonaws.com/out/a.mp4?..."


# ------------------------------------------------------------------ bad media


def test_html_page_instead_of_video(files, workdir):
    path = fetch_to_temp(files.url("html"), workdir=workdir, policy=OPEN, kind="video")
    with pytest.raises(MediaError, match="looks like an HTML page, not a video"):
        probe_media(path, "video")


def test_zero_length_file(files, workdir, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    path = fetch_to_temp(files.add_file("empty.mp4", empty), workdir=workdir, policy=OPEN, kind="video")
    assert path.stat().st_size == 0
    with pytest.raises(MediaError, match=r"is empty \(0 bytes\)"):
        probe_media(path, "video")


@pytest.mark.parametrize("name", ["d20.mp4", "d10.mp4"])  # moov atom at the start / at the end
def test_truncated_mp4(data_dir, tmp_path, name):
    data = (data_dir / "video" / name).read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(MediaError, match="truncated"):
        probe_media(cut, "video")


def test_truncated_matroska_without_stream_durations(data_dir, tmp_path):
    # Matroska declares only the container's duration, so the cut shows as every stream stopping early
    with av.open(str(data_dir / "video" / "d12.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(75), container.decode(video=0))]
    tone = np.sin(np.arange(16000 * 2) * 2 * np.pi * 220 / 16000).astype(np.float32) * 0.3
    whole = write_video(tmp_path / "whole.mkv", frames, fps=25, audio=tone, audio_rate=16000)
    info = probe_media(whole, "audio")
    assert info.container == "matroska,webm" and info.duration_s == pytest.approx(2.0, abs=0.1)
    assert probe_media(whole, "video").duration_s == pytest.approx(3.0, abs=0.1)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with pytest.raises(MediaError, match="is truncated: its longest stream stops at"):
        probe_media(cut, "video")


def test_truncated_wav(data_dir, tmp_path):
    data = (data_dir / "audio" / "sun.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"truncated.* 11\.\d s"):
        probe_media(cut, "audio")


def test_audio_only_file_as_video(data_dir):
    with pytest.raises(MediaError, match="no video stream: it is an audio-only file"):
        probe_media(data_dir / "audio" / "yongen.wav", "video")


def test_still_image_as_video(data_dir):
    with pytest.raises(MediaError, match="still image"):
        probe_media(data_dir / "image" / "d8.jpg", "video")


def test_video_as_image(data_dir):
    with pytest.raises(MediaError, match="looks like an MP4/MOV file, not an image"):
        probe_media(data_dir / "video" / "d12.mp4", "image")


def test_silent_video_as_audio(data_dir, tmp_path):
    with av.open(str(data_dir / "video" / "d11.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(12), container.decode(video=0))]
    silent = write_video(tmp_path / "silent.mp4", frames, fps=25)
    info = probe_media(silent, "video")
    assert info.has_video and not info.has_audio and info.frame_count == 12
    with pytest.raises(MediaError, match="is a video with no audio track"):
        probe_media(silent, "audio")


def test_video_file_is_valid_audio_input(data_dir):
    info = probe_media(data_dir / "video" / "d12.mp4", "audio")
    assert info.has_audio and info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(7.3, abs=0.1)


def test_xml_error_document(tmp_path):
    doc = tmp_path / "err.mp4"
    doc.write_bytes(b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>')
    with pytest.raises(MediaError, match="XML document \\(it says AccessDenied\\)"):
        probe_media(doc, "video")


def test_corrupt_bytes(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="not a readable video file"):
        probe_media(junk, "video")


def test_truncated_jpeg(data_dir, tmp_path):
    data = (data_dir / "image" / "d9.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="truncated or corrupt image"):
        probe_media(cut, "image")


# ------------------------------------------------------------------ upload


def test_upload_retries_5xx_then_succeeds(data_dir):
    source = data_dir / "video" / "d12.mp4"
    body = source.read_bytes()
    with PutReceiver([500, 500, 200]) as sink:
        result = upload_file(source, sink.url("out/result.mp4?sig=abc"), policy=FAST_UPLOAD)
        stored = sink.stored["/out/result.mp4"]
    assert result.attempts == 3 and result.status_code == 200
    assert result.bytes_sent == len(body) == len(stored)
    assert stored == body
    assert result.url.endswith("/out/result.mp4?...")
    assert len(sink.puts) == 3 and all(p.body == body for p in sink.puts)
    headers = sink.puts[-1].headers
    assert headers["content-type"] == "video/mp4"
    assert headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in headers
    assert result.etag == f'"{len(body):x}"'


def test_upload_403_fails_fast(data_dir):
    with PutReceiver([403]) as sink:
        with pytest.raises(UploadError) as err:
            upload_file(data_dir / "video" / "d20.mp4", sink.url("o.mp4?X-Amz-Signature=s3cr3t"), policy=FAST_UPLOAD)
    message = str(err.value)
    assert "the upload URL was refused (HTTP 403)" in message
    assert "presigned URLs expire; request a new one" in message
    assert "AccessDenied" in message and "s3cr3t" not in message
    assert err.value.status_code == 422
    assert len(sink.puts) == 1


def test_upload_gives_up_after_configured_attempts(data_dir):
    with PutReceiver([503]) as sink:
        with pytest.raises(UploadError, match="failed after 3 attempts: the server answered HTTP 503") as err:
            upload_file(data_dir / "audio" / "yongen.wav", sink.url("o.wav"), policy=FAST_UPLOAD)
    assert err.value.status_code == 502
    assert len(sink.puts) == 3


def test_upload_content_type_is_configurable(data_dir):
    policy = UploadPolicy(allow_private_networks=True, content_type="application/octet-stream")
    with PutReceiver() as sink:
        result = upload_file(data_dir / "audio" / "yongen.wav", sink.url("a.bin"), policy=policy)
    assert result.attempts == 1
    assert sink.puts[0].headers["content-type"] == "application/octet-stream"


def test_upload_to_closed_port(data_dir):
    with pytest.raises(UploadError, match="failed after 3 attempts: could not connect .* connection refused"):
        upload_file(data_dir / "video" / "d20.mp4", closed_port_url(), policy=FAST_UPLOAD)


def test_upload_private_url_refused_by_default(data_dir):
    with PutReceiver() as sink:
        with pytest.raises(UploadError, match="upload_url .* resolves to a loopback address") as err:
            upload_file(data_dir / "video" / "d20.mp4", sink.url("o.mp4"), policy=UploadPolicy())
    assert err.value.status_code == 422
    assert sink.requests == []


def test_check_upload_url():
    with PutReceiver() as sink:
        check_upload_url(sink.url("o.mp4"), FAST_UPLOAD)
        with pytest.raises(UploadError, match="loopback"):
            check_upload_url(sink.url("o.mp4"), UploadPolicy())
        assert sink.requests == []  # a TCP connect only, no HTTP request
    with pytest.raises(UploadError, match="cannot be reached") as err:
        check_upload_url(closed_port_url(), FAST_UPLOAD)
    assert err.value.status_code == 422
    check_upload_url(closed_port_url(), FAST_UPLOAD, probe_connect=False)
    with pytest.raises(UploadError, match="only http and https"):
        check_upload_url("s3://bucket/key.mp4", FAST_UPLOAD)


# ------------------------------------------------------------------ configuration


def test_private_urls_env_var(files, workdir, monkeypatch):
    monkeypatch.setenv("LIPSYNC_ALLOW_PRIVATE_URLS", "1")
    path = fetch_to_temp(files.url("image/s33.jpg"), workdir=workdir, policy=FetchPolicy.from_env(), kind="image")
    assert probe_media(path, "image").container == "JPEG"
    monkeypatch.setenv("LIPSYNC_ALLOW_PRIVATE_URLS", "0")
    with pytest.raises(FetchError, match="loopback"):
        fetch_to_temp(files.url("image/s33.jpg"), workdir=workdir, policy=FetchPolicy.from_env(), kind="image")


def test_policies_from_env():
    env = {
        "LIPSYNC_ALLOW_PRIVATE_URLS": "1",
        "LIPSYNC_ALLOW_LOCAL_FILES": "true",
        "LIPSYNC_FETCH_MAX_BYTES": "1000",
        "LIPSYNC_FETCH_MAX_REDIRECTS": "0",
        "LIPSYNC_ALLOWED_NETWORKS": "10.20.0.0/16, 192.168.1.5/32",
        "LIPSYNC_UPLOAD_CONTENT_TYPE": "application/octet-stream",
        "LIPSYNC_UPLOAD_ATTEMPTS": "2",
        "LIPSYNC_UPLOAD_BACKOFF_S": "0.25",
    }
    fetch = FetchPolicy.from_env(env)
    assert fetch.allow_private_networks and fetch.allow_local_files
    assert (fetch.max_bytes, fetch.max_redirects) == (1000, 0)
    assert fetch.allowed_networks == ("10.20.0.0/16", "192.168.1.5/32")
    assert fetch.read_timeout_s == FetchPolicy().read_timeout_s
    upload = UploadPolicy.from_env(env)
    assert upload.allow_private_networks and upload.content_type == "application/octet-stream"
    assert (upload.attempts, upload.backoff_base_s) == (2, 0.25)
    assert FetchPolicy.from_env({}) == FetchPolicy() and UploadPolicy.from_env({}) == UploadPolicy()
    with pytest.raises(ValueError, match="LIPSYNC_ALLOW_PRIVATE_URLS='maybe'"):
        FetchPolicy.from_env({"LIPSYNC_ALLOW_PRIVATE_URLS": "maybe"})
    with pytest.raises(ValueError, match="LIPSYNC_UPLOAD_ATTEMPTS='0' must be at least 1"):
        UploadPolicy.from_env({"LIPSYNC_UPLOAD_ATTEMPTS": "0"})
