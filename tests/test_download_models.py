"""scripts/download_models.py against a local HTTP server with Range support, and the real manifest's shape."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from models.manifest import MODELS, ModelFile, ModelSpec, get_model
from models.musetalk import has_face_parsing, missing_files

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("download_models", ROOT / "scripts" / "download_models.py")
dm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dm)


class StandInServer:
    """Serves bytes by path, honouring `Range: bytes=N-` unless told not to; records what it was asked."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.honour_range = True
        self.cut_after: int | None = None  # drop the connection after this many body bytes, once
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[: server.cut_after], None
                # Counted before the write: the client can finish reading before this thread
                # returns from write(), and the test reads the count as soon as the client is done.
                server.bytes_sent += len(payload)
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "StandInServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WEIGHTS = bytes(range(256)) * 4000  # 1,024,000 bytes: more than one read chunk
CONFIG = b'{"in_channels": 8}'


def _zip_bytes(names: tuple[str, ...], folder: str | None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(f"{folder}/{name}" if folder else name, f"onnx {name}".encode())
    return buffer.getvalue()


def _test_models(files: dict[str, bytes], zipped: bytes) -> tuple[ModelSpec, ...]:
    return (
        ModelSpec(
            name="unet",
            description="stand-in weights",
            license="MIT",
            files=(
                ModelFile("musetalkV15/unet.pth", "unused", size=len(files["musetalkV15/unet.pth"]), sha256=_sha(files["musetalkV15/unet.pth"])),
                ModelFile("musetalkV15/musetalk.json", "unused"),
            ),
        ),
        ModelSpec(
            name="faces",
            description="stand-in archive",
            license="non-commercial research only",
            non_commercial=True,
            files=(ModelFile("insightface/models/faces.zip", "unused", sha256=_sha(zipped)),),
            extract_to="insightface/models/faces",
            extracted=("det.onnx", "rec.onnx"),
        ),
    )


@pytest.fixture
def served():
    zipped = _zip_bytes(("det.onnx", "rec.onnx"), folder="faces")
    files = {"musetalkV15/unet.pth": WEIGHTS, "musetalkV15/musetalk.json": CONFIG, "insightface/models/faces.zip": zipped}
    with StandInServer(files) as server:
        yield server, _test_models(files, zipped)


def test_downloads_verifies_unzips_and_prints_licenses(served, tmp_path, capsys):
    server, models = served
    code = dm.main(["--models-dir", str(tmp_path), "--base-url", server.url], models=models)
    assert code == 0
    assert (tmp_path / "musetalkV15" / "unet.pth").read_bytes() == WEIGHTS
    assert (tmp_path / "musetalkV15" / "musetalk.json").read_bytes() == CONFIG
    assert (tmp_path / "insightface/models/faces/det.onnx").read_bytes() == b"onnx det.onnx"  # top folder dropped
    assert not (tmp_path / "insightface/models/faces.zip").exists()
    assert not list(tmp_path.rglob("*.part"))
    out = capsys.readouterr().out
    assert "unet: license: MIT" in out
    assert "faces: license: non-commercial research only  [NON-COMMERCIAL]" in out
    assert "may not be used in a commercial product" in out


def test_second_run_is_idempotent(served, tmp_path):
    server, models = served
    assert dm.main(["--models-dir", str(tmp_path), "--base-url", server.url], models=models) == 0
    asked = len(server.requests)
    with httpx.Client() as client:
        assert dm.install(client, models[0], tmp_path, server.url) == {
            "musetalkV15/unet.pth": "present",
            "musetalkV15/musetalk.json": "present",
        }
        assert dm.install(client, models[1], tmp_path, server.url) == {"insightface/models/faces": "present"}
    assert len(server.requests) == asked  # nothing fetched again


def test_resumes_a_partial_file_with_range(served, tmp_path):
    server, models = served
    part = tmp_path / "musetalkV15" / "unet.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(WEIGHTS[:300_000])
    with httpx.Client() as client:
        state = dm.download_file(client, models[0].files[0], tmp_path, server.url)
    assert state == "downloaded"
    assert server.requests == [("musetalkV15/unet.pth", "bytes=300000-")]
    assert server.bytes_sent == len(WEIGHTS) - 300_000
    assert (tmp_path / "musetalkV15" / "unet.pth").read_bytes() == WEIGHTS
    assert not part.exists()


def test_dropped_connection_is_resumed_in_the_same_run(served, tmp_path):
    server, models = served
    server.cut_after = 100_000
    with httpx.Client() as client:
        assert dm.download_file(client, models[0].files[0], tmp_path, server.url) == "downloaded"
    assert (tmp_path / "musetalkV15" / "unet.pth").read_bytes() == WEIGHTS
    assert server.requests[-1] == ("musetalkV15/unet.pth", "bytes=100000-")


def test_server_without_range_support_restarts_cleanly(served, tmp_path):
    server, models = served
    server.honour_range = False
    part = tmp_path / "musetalkV15" / "unet.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(WEIGHTS[:5000])
    with httpx.Client() as client:
        dm.download_file(client, models[0].files[0], tmp_path, server.url)
    assert (tmp_path / "musetalkV15" / "unet.pth").read_bytes() == WEIGHTS


def test_sha_mismatch_is_an_error_and_leaves_nothing(served, tmp_path):
    server, _ = served
    wrong = ModelFile("musetalkV15/unet.pth", "unused", sha256="0" * 64)
    with httpx.Client() as client, pytest.raises(dm.DownloadError) as err:
        dm.download_file(client, wrong, tmp_path, server.url)
    message = str(err.value)
    assert "unet.pth" in message and "0" * 64 in message and _sha(WEIGHTS) in message
    assert not (tmp_path / "musetalkV15" / "unet.pth").exists()
    assert not (tmp_path / "musetalkV15" / "unet.pth.part").exists()


def test_corrupt_existing_file_is_replaced(served, tmp_path):
    server, models = served
    dest = tmp_path / "musetalkV15" / "unet.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"truncated")
    with httpx.Client() as client:
        assert dm.download_file(client, models[0].files[0], tmp_path, server.url) == "downloaded"
    assert dest.read_bytes() == WEIGHTS


def test_missing_file_and_unknown_name_fail_clearly(served, tmp_path, capsys):
    server, models = served
    gone = ModelSpec("gone", "absent upstream", "MIT", (ModelFile("gone/x.pth", "unused"),))
    assert dm.main(["--models-dir", str(tmp_path), "--base-url", server.url], models=(gone,)) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert dm.main(["--models-dir", str(tmp_path), "--only", "nope"], models=models) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_only_selects_models(served, tmp_path):
    server, models = served
    assert dm.main(["--models-dir", str(tmp_path), "--base-url", server.url, "--only", "faces"], models=models) == 0
    assert (tmp_path / "insightface/models/faces/rec.onnx").is_file()
    assert not (tmp_path / "musetalkV15").exists()


def test_sha256_prefix_check():
    data = b"resnet"
    good = ModelFile("r.pth", "unused", sha256_prefix=_sha(data)[:8])
    bad = ModelFile("r.pth", "unused", sha256_prefix="5c106cde" if not _sha(data).startswith("5c106cde") else "00000000")
    path = Path(__file__).parent / "__sha_probe.bin"
    try:
        path.write_bytes(data)
        assert dm.verify(path, good) is None
        assert "expected one starting with" in dm.verify(path, bad)
    finally:
        path.unlink()


# ---------------------------------------------------------------- the real manifest


def test_manifest_covers_every_product_model():
    names = {m.name for m in MODELS}
    assert {"buffalo_l", "musetalk", "sd-vae", "whisper", "face-parse-bisent", "liveportrait", "codeformer", "light-asd"} <= names
    paths = [f.path for m in MODELS for f in m.files]
    assert len(paths) == len(set(paths))
    assert all(f.url.startswith("https://") for m in MODELS for f in m.files)
    assert all(not p.startswith("/") and ".." not in p for p in paths)
    assert all(f.sha256 is None or len(f.sha256) == 64 for m in MODELS for f in m.files)
    assert get_model("buffalo_l").non_commercial and get_model("codeformer").non_commercial
    assert not get_model("musetalk").non_commercial
    lp = {f.path for f in get_model("liveportrait").files}
    assert "liveportrait/retargeting_models/stitching_retargeting_module.pth" in lp and len(lp) == 5


def test_light_asd_entries_match_the_shared_weights():
    shared = ROOT.parent / "shared" / "models" / "light-asd"
    if not shared.exists():
        pytest.skip(f"shared weights missing: {shared}")
    for spec in get_model("light-asd").files:
        assert dm.verify(shared / Path(spec.path).name, spec) is None


def test_manifest_paths_are_what_the_other_loaders_read():
    liveportrait = pytest.importorskip("models.liveportrait.loader")
    codeformer = pytest.importorskip("models.codeformer")
    assert {f.path for f in get_model("liveportrait").files} == set(liveportrait.LIVEPORTRAIT_FILES)
    assert [f.path for f in get_model("codeformer").files] == [codeformer.CODEFORMER_FILE, codeformer.PARSENET_FILE]


def test_manifest_layout_is_what_the_musetalk_loader_reads(tmp_path):
    for name in ("musetalk", "sd-vae", "whisper", "face-parse-bisent"):
        for spec in get_model(name).files:
            (tmp_path / spec.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / spec.path).write_bytes(b"")
    assert missing_files(tmp_path) == []
    assert has_face_parsing(tmp_path)
