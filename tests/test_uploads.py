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


# --- issue 27: leases, the quota and the id rules, exactly -----------------------------------
import threading  # noqa: E402

from service.uploads import (  # noqa: E402
    LEASE_MAX_S, LEASES, UploadQuota, result_store, upload_ids, upload_quota, upload_store,
)

ID = "0123456789abcdef" * 2


def test_a_leased_file_outlives_its_ttl_until_released(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    path = tmp_path / f"{ID}.video.mp4"
    path.write_bytes(b"x")
    assert store.lease(ID, "job_1-a") == store.get(ID)
    assert (tmp_path / LEASES / f"{ID}.job_1-a").is_file()
    assert store.lease(ID, "job2") is not None
    age(path, 61)
    assert store.leased(ID) and store.get(ID) is not None and store.sweep() == 0 and path.exists()
    assert store.lease(ID, "job3") is None  # a new job does not revive an expired upload
    assert store.release("job_1-a") == 1 and store.get(ID) is not None  # job2 still holds it
    assert store.release("job2") == 1 and store.release("job2") == 0
    assert not store.leased(ID) and store.get(ID) is None and store.sweep() == 1 and not path.exists()


def test_a_lease_older_than_the_maximum_holds_nothing_and_is_swept(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    path = tmp_path / f"{ID}.mp4"
    path.write_bytes(b"x")
    store.lease(ID, "lost")
    lease = tmp_path / LEASES / f"{ID}.lost"
    age(lease, LEASE_MAX_S - 5)
    assert store.leased(ID)
    age(lease, LEASE_MAX_S + 5)
    assert not store.leased(ID)
    age(path, 61)
    assert store.sweep() == 1 and not lease.exists() and not path.exists()


def test_lease_refuses_unknown_ids_and_bad_holders(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    assert store.lease(ID, "job") is None and not (tmp_path / LEASES).exists()
    with pytest.raises(ValueError) as caught:
        store.lease(ID, "../x")
    assert str(caught.value) == "lease holder '../x' must be 1-64 letters, digits, _ or -"
    # a holder of 64 characters is fine, 65 is not
    (tmp_path / f"{ID}.mp4").write_bytes(b"x")
    assert store.lease(ID, "h" * 64) is not None
    with pytest.raises(ValueError):
        store.lease(ID, "h" * 65)
    assert store.release("../x") == 0 and store.release("*") == 0
    assert FileStore(tmp_path / "none", ttl_s=60).release("job") == 0


def test_get_matches_the_whole_id_only(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    (tmp_path / f"{ID}x.mp4").write_bytes(b"x")  # another name that starts with the id
    (tmp_path / ID).mkdir()  # a folder with the id's name
    assert store.get(ID) is None
    assert store.files() == []
    (tmp_path / f"{ID}.mp4").write_bytes(b"abc")
    assert store.get(ID).path == tmp_path / f"{ID}.mp4"
    assert store.files() == [tmp_path / f"{ID}.mp4"]
    assert FileStore(tmp_path / "missing", ttl_s=60).get(ID) is None
    assert FileStore(tmp_path / "missing", ttl_s=60).files() == []


def test_a_file_just_inside_its_ttl_is_served(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    path = tmp_path / f"{ID}.mp4"
    path.write_bytes(b"x")
    age(path, 58)
    assert store.get(ID) is not None and store.sweep() == 0
    assert store.get(ID).expires_at == pytest.approx(path.stat().st_mtime + 60)


@pytest.mark.parametrize("suffix,kept", [(".MP4", ".mp4"), (".wav", ".wav"), (".abcde", ".abcde"),
                                         (".abcdef", ""), ("mp4", ""), (".a/b", ""), ("", ""), (None, "")])
def test_new_path_keeps_only_a_plain_short_suffix(tmp_path, suffix, kept):
    store = FileStore(tmp_path / "s", ttl_s=60)
    file_id, path = store.new_path(suffix)
    assert path == tmp_path / "s" / f"{file_id}{kept}"


def test_new_path_sweeps_expired_files(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    old = tmp_path / f"{ID}.mp4"
    old.write_bytes(b"x")
    age(old, 61)
    store.new_path(".mp4")
    assert not old.exists()


def test_total_bytes_leaves_out_the_excluded(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    a, b = tmp_path / f"{ID}.a", tmp_path / f"{'f' * 32}.b"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 5)
    assert store.total_bytes() == 15 and store.total_bytes(exclude={b}) == 10


def test_quota_reserves_up_to_the_total_exactly(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    (tmp_path / f"{ID}.mp4").write_bytes(b"x" * 40)
    quota = UploadQuota(store, total=100)
    one, two = tmp_path / f"{'a' * 32}.mp4", tmp_path / f"{'b' * 32}.mp4"
    assert quota.start(one, declared=60) and not quota.start(two, declared=61)
    assert quota.start(two)
    assert quota.reserve(one, 50) and quota.reserve(two, 10)  # 40 + 50 + 10 = 100: full
    assert not quota.reserve(two, 1)
    quota.end(two, kept=False)  # a failed upload gives its 10 bytes back
    assert quota.reserve(one, 10) and not quota.reserve(one, 1)
    one.write_bytes(b"x" * 60)
    quota.end(one, kept=True)  # a kept upload's 60 bytes count as stored
    assert not quota.reserve(two, 1)
    assert not quota.start(two, declared=1)  # read from disk again: 40 + 60


def test_quota_start_reads_finished_uploads_but_not_arriving_ones(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    quota = UploadQuota(store, total=100)
    arriving = tmp_path / f"{'a' * 32}.mp4"
    assert quota.start(arriving)
    assert quota.reserve(arriving, 30)
    arriving.write_bytes(b"x" * 30)  # on disk already, reserved once only
    second = tmp_path / f"{'b' * 32}.mp4"
    assert quota.start(second, declared=70) and quota.reserve(second, 70) and not quota.reserve(second, 1)


def test_one_quota_per_store_folder(tmp_path):
    first = upload_quota(FileStore(tmp_path / "q", ttl_s=60), 10)
    again = upload_quota(FileStore(tmp_path / "q" / ".." / "q", ttl_s=60), 20)
    assert again is first and first.total == 20
    assert upload_quota(FileStore(tmp_path / "other", ttl_s=60), 10) is not first


def test_quota_is_safe_across_threads(tmp_path):
    quota = UploadQuota(FileStore(tmp_path, ttl_s=60), total=1000)
    paths = [tmp_path / f"{c * 32}.bin" for c in "abcd"]
    for p in paths:
        quota.start(p)
    granted = []

    def upload(path):
        granted.append(sum(10 for _ in range(100) if quota.reserve(path, 10)))

    threads = [threading.Thread(target=upload, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000


def test_stores_live_in_the_workdir_with_their_ttl(tmp_path):
    limits = StoreLimits(upload_ttl_s=10, result_ttl_s=20)
    assert (upload_store(tmp_path, limits).folder, upload_store(tmp_path, limits).ttl_s) == (tmp_path / "lipsync-uploads", 10)
    assert (result_store(tmp_path, limits).folder, result_store(tmp_path, limits).ttl_s) == (tmp_path / "lipsync-results", 20)


def test_upload_urls():
    assert is_upload_url("UPLOAD://abc") and is_upload_url("upload://") and not is_upload_url("uploads://x")
    assert upload_ids([None, "https://h/x", f"upload://{ID}", f"upload://{ID}", f"upload://{ID}/", "Upload://ab"]) == [
        (f"upload://{ID}", ID), (f"upload://{ID}/", ID), ("Upload://ab", "ab")]


def test_fetch_upload_twice_links_once_and_strips_slashes(tmp_path):
    store = FileStore(tmp_path / "u", ttl_s=90)
    _, path = store.new_path(".wav")
    path.write_bytes(b"stem")
    file_id = path.name.split(".")[0]
    first = fetch_upload(f"upload:///{file_id}/", store, tmp_path / "job" / "deep", "faces[0].audio_url")
    assert first == tmp_path / "job" / "deep" / f"upload-{path.name}"
    assert fetch_upload(f"upload://{file_id}", store, tmp_path / "job" / "deep", "audio_url") == first
    assert first.stat().st_ino == path.stat().st_ino  # a hard link, no copy
    with pytest.raises(FetchError) as caught:
        fetch_upload("upload://" + "e" * 70, store, tmp_path / "job", "audio_url")
    assert str(caught.value) == (f"audio_url {('upload://' + 'e' * 70)[:60]!r} is not a known upload or it expired "
                                 "(after 90 s, LIPSYNC_UPLOAD_TTL_S); upload the file again")


def test_fetch_upload_copies_when_it_cannot_link(tmp_path, monkeypatch):
    store = FileStore(tmp_path / "u", ttl_s=90)
    _, path = store.new_path(".wav")
    path.write_bytes(b"stem")

    def no_link(src, dst):
        raise OSError("cross-device link")

    monkeypatch.setattr("service.uploads.os.link", no_link)
    local = fetch_upload(f"upload://{path.name.split('.')[0]}", store, tmp_path / "job", "audio_url")
    assert local.read_bytes() == b"stem" and local.stat().st_ino != path.stat().st_ino


@pytest.mark.parametrize("fields", [{"upload_max_bytes": 0}, {"upload_total_bytes": 0}, {"upload_ttl_s": 0},
                                    {"result_ttl_s": 0}, {"upload_ttl_s": -1}])
def test_store_limits_refuse_zero(fields):
    with pytest.raises(ValueError) as caught:
        StoreLimits(**fields)
    assert str(caught.value) == "StoreLimits: the byte limits must be >= 1 and the TTLs > 0"


def test_store_limits_smallest_and_env_defaults():
    assert StoreLimits(upload_max_bytes=1, upload_total_bytes=1, upload_ttl_s=0.001, result_ttl_s=0.001)
    assert StoreLimits.from_env({}) == StoreLimits() == StoreLimits(512 * 1024**2, 10 * 1024**3, 3600.0, 3600.0)
    assert StoreLimits.from_env({"LIPSYNC_UPLOAD_TOTAL_BYTES": " 77 ", "LIPSYNC_UPLOAD_TTL_S": "1.5",
                                 "LIPSYNC_UPLOAD_MAX_BYTES": ""}) == StoreLimits(upload_total_bytes=77, upload_ttl_s=1.5)
    with pytest.raises(ValueError) as caught:
        StoreLimits.from_env({"LIPSYNC_UPLOAD_MAX_BYTES": "1.5"})
    assert str(caught.value) == "LIPSYNC_UPLOAD_MAX_BYTES='1.5' is not a valid int"
    assert isinstance(StoreLimits.from_env({"LIPSYNC_UPLOAD_MAX_BYTES": "5"}).upload_max_bytes, int)


def test_release_and_sweep_count_every_file(tmp_path):
    store = FileStore(tmp_path, ttl_s=60)
    ids = [c * 32 for c in "abc"]
    for file_id in ids:
        (tmp_path / f"{file_id}.mp4").write_bytes(b"x")
        store.lease(file_id, "job")
    assert store.release("job") == 3
    for file_id in ids:
        age(tmp_path / f"{file_id}.mp4", 61)
    assert store.sweep() == 3 and store.sweep() == 0
    assert FileStore(tmp_path / "none", ttl_s=60).sweep() == 0


def test_new_path_creates_nested_folders_and_defaults_to_no_suffix(tmp_path):
    store = FileStore(tmp_path / "a" / "b", ttl_s=60)
    file_id, path = store.new_path()
    assert path == tmp_path / "a" / "b" / file_id and path.parent.is_dir()


def test_quota_counts_from_zero_without_start_and_end_of_an_unknown_upload_adds_nothing(tmp_path):
    quota = upload_quota(FileStore(tmp_path / "fresh", ttl_s=60), 10)
    path = tmp_path / "fresh" / f"{ID}.mp4"
    assert quota.start(path) and quota.reserve(path, 10) and not quota.reserve(path, 1)
    quota.end(path, kept=False)
    quota.end(tmp_path / "never-started", kept=True)
    other = UploadQuota(FileStore(tmp_path / "other", ttl_s=60), total=10)
    assert other.reserve(path, 5) and other.reserve(path, 5) and not other.reserve(path, 1)
    assert quota.reserve(path, 10)


def test_store_limits_from_the_process_env(monkeypatch):
    monkeypatch.setenv("LIPSYNC_UPLOAD_TTL_S", "7")
    assert StoreLimits.from_env().upload_ttl_s == 7.0
