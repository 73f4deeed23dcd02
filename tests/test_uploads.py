"""stream/uploads.py: kept files under random ids, expiry by age, and upload:// lookups."""
from __future__ import annotations

import os
import time

import pytest

from service.uploads import FileStore, StoreLimits, fetch_upload, is_upload_url
from stream.errors import FetchError


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_keep_moves_a_file_under_a_fresh_random_id(tmp_path):
    store = FileStore(tmp_path / "kept", ttl_s=60)
    source = tmp_path / "output.mp4"
    source.write_bytes(b"result")
    kept = store.keep(source)
    assert not source.exists() and kept.path.read_bytes() == b"result"
    assert len(kept.file_id) == 32 and kept.path.name == f"{kept.file_id}.mp4"
    assert store.get(kept.file_id) == kept
    assert kept.expires_at == pytest.approx(kept.path.stat().st_mtime + 60)
    other, _ = store.new_path(".mp4")
    assert other != kept.file_id


@pytest.mark.parametrize("file_id", ["", "*", "../kept", "0" * 31, "0" * 33, "A" * 32, "0" * 32 + "/x"])
def test_malformed_ids_find_nothing(tmp_path, file_id):
    store = FileStore(tmp_path, ttl_s=60)
    (tmp_path / ("0" * 32 + ".mp4")).write_bytes(b"x")
    assert store.get(file_id) is None


def test_expired_files_are_not_served_and_are_swept(tmp_path):
    store = FileStore(tmp_path / "kept", ttl_s=60)
    file_id, path = store.new_path(".wav", tag="audio")
    path.write_bytes(b"x")
    assert path.name == f"{file_id}.audio.wav" and store.get(file_id) is not None
    age(path, 61)
    assert store.get(file_id) is None and path.exists()  # refused at once, removed by the next sweep
    assert store.sweep() == 1 and not path.exists()


def test_total_bytes_counts_live_files_only(tmp_path):
    store = FileStore(tmp_path / "kept", ttl_s=60)
    assert store.total_bytes() == 0  # no folder yet
    for size in (10, 20, 30):
        _, path = store.new_path(".bin")
        path.write_bytes(b"x" * size)
    age(path, 61)
    assert store.total_bytes() == 30


def test_fetch_upload_links_the_file_into_the_job_dir(tmp_path):
    store = FileStore(tmp_path / "uploads", ttl_s=60)
    file_id, path = store.new_path(".mp4", tag="video")
    path.write_bytes(b"video bytes")
    assert is_upload_url(f"upload://{file_id}") and not is_upload_url("https://example.com/upload://x")
    local = fetch_upload(f"upload://{file_id}", store, tmp_path / "job", "video_url")
    assert local.parent == tmp_path / "job" and local.read_bytes() == b"video bytes"
    path.unlink()  # the upload expiring mid-job leaves the job's copy alone
    assert local.read_bytes() == b"video bytes"
    with pytest.raises(FetchError, match=r"^video_url 'upload://0+' is not a known upload or it expired"):
        fetch_upload("upload://" + "0" * 32, store, tmp_path / "job", "video_url")


def test_store_limits_from_env():
    limits = StoreLimits.from_env({"LIPSYNC_UPLOAD_MAX_BYTES": "1000", "LIPSYNC_RESULT_TTL_S": "5"})
    assert limits == StoreLimits(upload_max_bytes=1000, upload_total_bytes=10 * 1024**3, upload_ttl_s=3600.0,
                                 result_ttl_s=5.0)
    with pytest.raises(ValueError, match="LIPSYNC_UPLOAD_TTL_S='soon' is not a valid float"):
        StoreLimits.from_env({"LIPSYNC_UPLOAD_TTL_S": "soon"})
    with pytest.raises(ValueError, match="TTLs > 0"):
        StoreLimits.from_env({"LIPSYNC_RESULT_TTL_S": "0"})
