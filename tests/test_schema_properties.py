"""jobs/schema.py, property-based (hypothesis): any faces[] or characters[] body inside every
documented bound parses to exactly its values; moving one field just past its bound is refused
with a message naming that field (issue 27)."""
from __future__ import annotations

import os

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.schema import MAX_ID_CHARS, MAX_NUMBER, parse_characters, parse_detect, parse_faces
from stream.errors import InputError

EXAMPLES = int(os.environ.get("LIPSYNC_HYPOTHESIS_EXAMPLES", "100"))
"""Examples per property; scripts/mutation.py lowers it, since every mutant reruns the file."""
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=MAX_ID_CHARS)
IDS = st.one_of(TEXT, st.integers(-10 ** 6, 10 ** 6))
COORD = st.floats(-MAX_NUMBER, MAX_NUMBER, allow_nan=False)
SIZE = st.floats(0, MAX_NUMBER, exclude_min=True)
UNIT = st.floats(0, 1)


@st.composite
def faces(draw) -> dict:
    """One faces[] entry inside every bound."""
    start = draw(st.floats(0, MAX_NUMBER / 2))
    end = draw(st.floats(start, MAX_NUMBER, exclude_min=True))
    item = {"character_id": draw(IDS), "bbox": [draw(COORD), draw(COORD), draw(SIZE), draw(SIZE)],
            "start_time_ms": start, "end_time_ms": end}
    if draw(st.booleans()):
        item["audio_url"] = "https://h.example/stem.wav"
        item["audio_offset_ms"] = draw(COORD)
    if draw(st.booleans()):
        item["expressiveness"] = draw(UNIT)
    return item


def message(items) -> str:
    with pytest.raises(InputError) as caught:
        parse_faces(items)
    return str(caught.value)


@SETTINGS
@given(item=faces())
def test_faces_inside_every_bound_parse_to_their_values(item):
    (face,) = parse_faces([item])
    assert face.character_id == str(item["character_id"])
    assert face.bbox == [float(v) for v in item["bbox"]]
    assert (face.start_time_ms, face.end_time_ms) == (item["start_time_ms"], item["end_time_ms"])
    assert face.voice.audio_url == item.get("audio_url")
    assert face.voice.offset_ms == item.get("audio_offset_ms", 0.0)
    assert face.voice.expressiveness == item.get("expressiveness")


@SETTINGS
@given(item=faces(), k=st.sampled_from([2, 3]), size=st.floats(-MAX_NUMBER, 0))
def test_a_bbox_without_positive_width_or_height_is_refused(item, k, size):
    item["bbox"][k] = size
    assert message([item]) == "field 'faces[0].bbox' must have a positive width and height"


@SETTINGS
@given(item=faces(), k=st.integers(0, 3), over=st.floats(MAX_NUMBER, 1e300, exclude_min=True), sign=st.sampled_from([1, -1]))
def test_a_bbox_number_past_the_magnitude_bound_is_refused(item, k, over, sign):
    item["bbox"][k] = over * sign
    assert message([item]) == f"field 'faces[0].bbox[{k}]' must be a finite number of magnitude at most {MAX_NUMBER:g}"


@SETTINGS
@given(item=faces(), start=st.floats(-MAX_NUMBER, 0, exclude_max=True))
def test_a_negative_start_is_refused(item, start):
    item["start_time_ms"] = start
    assert message([item]) == "field 'faces[0].start_time_ms' must be >= 0"


@SETTINGS
@given(item=faces(), back=st.floats(0, MAX_NUMBER))
def test_an_end_not_after_the_start_is_refused(item, back):
    item["end_time_ms"] = max(item["start_time_ms"] - back, -MAX_NUMBER)
    assert message([item]).startswith("field 'faces[0].end_time_ms' (")


@SETTINGS
@given(item=faces(), extra=st.integers(1, 50))
def test_an_id_past_the_length_bound_is_refused(item, extra):
    item["character_id"] = "x" * (MAX_ID_CHARS + extra)
    assert message([item]) == (f"field 'faces[0].character_id' is {MAX_ID_CHARS + extra} characters long; "
                               f"ids may have at most {MAX_ID_CHARS}")


@SETTINGS
@given(item=faces(), value=st.one_of(st.floats(-MAX_NUMBER, 0, exclude_max=True), st.floats(1, MAX_NUMBER, exclude_min=True)))
def test_expressiveness_past_0_1_is_refused(item, value):
    item["expressiveness"] = value
    assert message([item]) == "field 'faces[0].expressiveness' must be in [0, 1] (0.5 moves the mouth as the engine does)"


@SETTINGS
@given(items=st.lists(faces(), min_size=2, max_size=5), index=st.integers(0, 4))
def test_the_message_names_the_index_of_the_bad_face(items, index):
    index = index % len(items)
    items[index]["bbox"][3] = 0
    for i, item in enumerate(items[:index]):  # earlier entries stay valid and distinct
        item["character_id"] = f"ok{i}"
    assert message(items).startswith(f"field 'faces[{index}].")


@st.composite
def characters(draw) -> list[dict]:
    ids = draw(st.lists(IDS, max_size=6, unique_by=str))
    return [{"id": i, "reference_image_url": "https://h.example/r.jpg",
             **({"name": draw(TEXT)} if draw(st.booleans()) else {})} for i in ids]


@SETTINGS
@given(items=characters())
def test_characters_with_distinct_ids_parse(items):
    parsed = parse_characters(items)
    assert [c.id for c in parsed] == [str(item["id"]) for item in items]
    assert [c.name for c in parsed] == [item.get("name") for item in items]


@SETTINGS
@given(items=characters().filter(bool), extra=st.integers(1, 20), index=st.integers(0, 5))
def test_characters_past_a_bound_are_refused(items, extra, index):
    index %= len(items)
    duplicate = items + [dict(items[index])]
    with pytest.raises(InputError, match="field 'characters' has duplicate ids"):
        parse_characters(duplicate)
    items[index]["id"] = "y" * (MAX_ID_CHARS + extra)
    with pytest.raises(InputError, match=rf"field 'characters\[{index}\]\.id' is {MAX_ID_CHARS + extra} characters long"):
        parse_characters(items)


@SETTINGS
@given(fps=st.floats(0, 60, exclude_min=True))
def test_sample_fps_in_0_60_is_accepted(fps):
    assert parse_detect({"video_url": "u", "sample_fps": fps}).sample_fps == fps


@SETTINGS
@given(fps=st.one_of(st.floats(60, MAX_NUMBER, exclude_min=True), st.floats(-MAX_NUMBER, 0)))
def test_sample_fps_outside_0_60_is_refused(fps):
    assert not math.isnan(fps)
    with pytest.raises(InputError, match=r"field 'sample_fps' must be in \(0, 60\] frames per second"):
        parse_detect({"video_url": "u", "sample_fps": fps})
