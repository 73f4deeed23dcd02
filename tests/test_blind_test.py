"""scripts/blind_test.py: pairs over the whole edited range, a separate key, an honest score."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.media import read_frames, write_video

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("blind_test", ROOT / "scripts" / "blind_test.py")
blind_test = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(blind_test)


@given(n=st.integers(1, 400), pairs=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_picks_are_one_per_equal_stretch_of_the_edited_range(n, pairs, seed):
    """Invariants: min(pairs, n) distinct, sorted frames, the k-th from the k-th of equal
    stretches of the edited frames (so the first and last stretches are always covered)."""
    edited = list(range(100, 100 + 3 * n, 3))
    picks = blind_test.spread_picks(edited, pairs, np.random.default_rng(seed))
    count = min(pairs, n)
    assert len(picks) == count and picks == sorted(set(picks))
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    for pick, lo, hi in zip(picks, bounds[:-1], bounds[1:]):
        assert edited[lo] <= pick <= edited[hi - 1]


def test_two_seeds_show_different_moments():
    """Two outputs of one source tested with different seeds share few frames, so the
    real frames cannot be found as the ones both tests show."""
    edited = list(range(180))
    a = blind_test.spread_picks(edited, 16, np.random.default_rng(1))
    b = blind_test.spread_picks(edited, 16, np.random.default_rng(2))
    assert len(set(a) & set(b)) <= 4
    assert a == blind_test.spread_picks(edited, 16, np.random.default_rng(1))


def test_make_and_score_on_a_real_clip(data_dir, tmp_path, capsys):
    """d12's first 30 frames against a copy whose mouth is darkened in frames 8-21: the
    pairs come only from the edited frames, the key is apart from them, answering from the
    key scores every pair and the opposite none."""
    frames = read_frames(data_dir / "video" / "d12.mp4")[:30]
    from models.faces.default import DefaultFaceBackend

    face = DefaultFaceBackend().detect(frames[0], with_embedding=False)[0]
    x0, y0 = np.floor(face.landmarks[48:68].min(axis=0)).astype(int)
    x1, y1 = np.ceil(face.landmarks[48:68].max(axis=0)).astype(int)
    edited = [f.copy() for f in frames]
    for f in edited[8:22]:
        f[y0:y1, x0:x1] //= 2
    source = write_video(tmp_path / "source.mp4", frames, crf=10)
    output = write_video(tmp_path / "output.mp4", edited, crf=10)
    folder = tmp_path / "pairs"
    argv = ["make", "--source", str(source), "--output", str(output), "--dir", str(folder), "--pairs", "6"]
    assert blind_test.main(argv) == 0
    key = json.loads((folder / "key.json").read_text())
    assert sorted(key) == [f"{k:02d}" for k in range(6)]
    assert all(8 <= entry["frame"] <= 21 for entry in key.values())
    assert len(list(folder.glob("pair_*.png"))) == 6
    right = tmp_path / "right.txt"
    right.write_text("".join(f"{name} {entry['edited']}\n" for name, entry in key.items()))
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("".join(f"{name} {'AB'[entry['edited'] == 'A']}\n" for name, entry in key.items()))
    capsys.readouterr()
    assert blind_test.main(["score", "--dir", str(folder), "--answers", str(right)]) == 0
    assert "in 6 of 6 pairs" in capsys.readouterr().out
    assert blind_test.main(["score", "--dir", str(folder), "--answers", str(wrong)]) == 0
    assert "in 0 of 6 pairs" in capsys.readouterr().out
    wrong.write_text("00 A\n")
    assert blind_test.main(["score", "--dir", str(folder), "--answers", str(wrong)]) == 2  # pairs left unanswered
