"""jobs/schema.py: the request bodies' parsers accept every documented value and refuse the
first one past each bound, with a message naming the field (issue 27: the sample_fps upper
bound and the bbox height check had no test sending them)."""
from __future__ import annotations

import pytest

from jobs.schema import (
    MAX_DEPTH, MAX_ID_CHARS, MAX_NUMBER, CharacterSpec, FaceSpec, Voice, check_auto_voices, check_detect_options,
    check_json, check_lipsync_options, is_text, parse_characters, parse_detect, parse_faces, parse_lipsync,
    parse_voices, shown,
)
from stream.errors import InputError


def face(**fields) -> dict:
    return {"character_id": "alice", "bbox": [10, 20, 30, 40], "start_time_ms": 0, "end_time_ms": 1000, **fields}


def refused(parse, *args, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        parse(*args, **kwargs)
    return str(caught.value)


def lipsync(**fields) -> dict:
    return {"video_url": "https://h/v.mp4", "audio_url": "https://h/a.wav", "upload_url": "https://h/out",
            "faces": [face()], **fields}


# --- detect options ------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [0.001, 1, 3.0, 60])
def test_sample_fps_in_range_is_accepted(fps):
    assert parse_detect({"video_url": "u", "sample_fps": fps}).sample_fps == float(fps)


@pytest.mark.parametrize("fps", [0, -1, 60.001, 61, 1000])
def test_sample_fps_outside_0_60_is_refused(fps):
    assert refused(parse_detect, {"video_url": "u", "sample_fps": fps}) == \
        f"field 'sample_fps' must be in (0, 60] frames per second, not {fps:g}"


@pytest.mark.parametrize("threshold", [-1, -0.25, 0, 1])
def test_similarity_threshold_in_range_is_accepted(threshold):
    assert parse_detect({"video_url": "u", "similarity_threshold": threshold}).similarity_threshold == threshold


@pytest.mark.parametrize("threshold", [-1.001, 1.001, 2])
def test_similarity_threshold_outside_is_refused(threshold):
    assert refused(parse_detect, {"video_url": "u", "similarity_threshold": threshold}) == \
        f"field 'similarity_threshold' must be in [-1, 1] (ArcFace cosine similarity), not {threshold:g}"


def test_detect_defaults_and_cli_flag_names():
    request = parse_detect({"video_url": "u", "characters": None})
    assert (request.sample_fps, request.similarity_threshold, request.characters) == (3.0, 0.5, [])
    assert refused(check_detect_options, 0, 0.5, names=("--fps", "--threshold")) == \
        "--fps must be in (0, 60] frames per second, not 0"
    assert refused(check_detect_options, 3, 5, names=("--fps", "--threshold")) == \
        "--threshold must be in [-1, 1] (ArcFace cosine similarity), not 5"


# --- faces[] -----------------------------------------------------------------------------

def test_a_face_parses_to_floats_and_its_voice():
    parsed = parse_faces([face(character_id=7, audio_url="https://h/s.wav", audio_offset_ms=-250,
                               expressiveness=1)])
    assert parsed == [FaceSpec("7", [10.0, 20.0, 30.0, 40.0], 0.0, 1000.0,
                               Voice("https://h/s.wav", -250.0, 1.0))]
    assert parse_faces([face()])[0].voice == Voice(None, 0.0, None)


@pytest.mark.parametrize("bbox", [[0, 0, 0, 10], [0, 0, 10, 0], [0, 0, -1, 10], [0, 0, 10, -0.5]])
def test_bbox_width_and_height_must_be_positive(bbox):
    assert refused(parse_faces, [face(bbox=bbox)]) == "field 'faces[0].bbox' must have a positive width and height"


@pytest.mark.parametrize("bbox", [[0, 0, 0.001, 0.001], [-5, -5, 1, 1]])
def test_smallest_positive_bbox_is_accepted(bbox):
    assert parse_faces([face(bbox=bbox)])[0].bbox == [float(v) for v in bbox]


@pytest.mark.parametrize("bbox", [[1, 2, 3], [1, 2, 3, 4, 5], [1, 2, "3", 4], [1, 2, True, 4], "1,2,3,4"])
def test_bbox_must_be_four_numbers(bbox):
    message = refused(parse_faces, [face(bbox=bbox)])
    if isinstance(bbox, str):
        assert message == "field 'faces[0].bbox' must be list, got str"
    else:
        assert message == "field 'faces[0].bbox' must be [x, y, w, h] in pixels"


def test_bbox_number_past_the_magnitude_bound_names_its_index():
    assert refused(parse_faces, [face(bbox=[0, 0, 10, MAX_NUMBER * 10])]) == \
        f"field 'faces[0].bbox[3]' must be a finite number of magnitude at most {MAX_NUMBER:g}"
    assert parse_faces([face(bbox=[0, 0, 10, MAX_NUMBER])])[0].bbox[3] == MAX_NUMBER


def test_times():
    assert parse_faces([face(start_time_ms=0, end_time_ms=0.001)])[0].end_time_ms == 0.001
    assert refused(parse_faces, [face(start_time_ms=-0.001)]) == "field 'faces[0].start_time_ms' must be >= 0"
    assert refused(parse_faces, [face(start_time_ms=500, end_time_ms=500)]) == \
        "field 'faces[0].end_time_ms' (500) must be after start_time_ms (500)"
    assert refused(parse_faces, [face(start_time_ms=500, end_time_ms=400)]) == \
        "field 'faces[0].end_time_ms' (400) must be after start_time_ms (500)"


@pytest.mark.parametrize("missing", ["character_id", "bbox", "start_time_ms", "end_time_ms"])
def test_missing_face_field_is_named_with_its_index(missing):
    item = face()
    del item[missing]
    assert refused(parse_faces, [face(), item]) == f"missing field 'faces[1].{missing}'"
    item[missing] = None
    assert refused(parse_faces, [face(), item]) == f"missing field 'faces[1].{missing}'"


@pytest.mark.parametrize("items", [[], None, {"character_id": "a"}, "faces"])
def test_faces_must_be_a_non_empty_list(items):
    assert refused(parse_faces, items) == "field 'faces' must be a non-empty list of faces to lip-sync"
    assert refused(parse_faces, items, where="cli") == "field 'cli' must be a non-empty list of faces to lip-sync"


def test_face_entry_must_be_an_object():
    assert refused(parse_faces, [face(), 3]) == "faces[1] must be a JSON object"


def test_repeated_face_is_refused_and_a_different_one_is_not():
    assert refused(parse_faces, [face(), face(character_id="bob"), face()]) == \
        "field 'faces[2]' repeats faces[0]; give each face once"
    assert len(parse_faces([face(), face(start_time_ms=1000, end_time_ms=2000)])) == 2


def test_character_id_length_bound():
    assert parse_faces([face(character_id="x" * MAX_ID_CHARS)])[0].character_id == "x" * MAX_ID_CHARS
    assert refused(parse_faces, [face(character_id="x" * (MAX_ID_CHARS + 1))]) == \
        f"field 'faces[0].character_id' is {MAX_ID_CHARS + 1} characters long; ids may have at most {MAX_ID_CHARS}"


@pytest.mark.parametrize("value", [0, 0.5, 1])
def test_face_expressiveness_in_range(value):
    assert parse_faces([face(expressiveness=value)])[0].voice.expressiveness == value


@pytest.mark.parametrize("value", [-0.001, 1.001])
def test_face_expressiveness_out_of_range(value):
    assert refused(parse_faces, [face(expressiveness=value)]) == \
        "field 'faces[0].expressiveness' must be in [0, 1] (0.5 moves the mouth as the engine does)"


def test_audio_offset_needs_a_stem():
    assert refused(parse_faces, [face(audio_offset_ms=100)]) == \
        "field 'faces[0].audio_offset_ms' places a stem: give 'faces[0].audio_url' too"
    assert parse_faces([face(audio_offset_ms=0)])[0].voice.offset_ms == 0.0


# --- characters[] ------------------------------------------------------------------------

def test_characters_parse():
    assert parse_characters([{"id": 1, "reference_image_url": "https://h/a.jpg"},
                             {"id": "b", "name": "Bo", "reference_image_url": "https://h/b.jpg"}]) == [
        CharacterSpec("1", None, "https://h/a.jpg"), CharacterSpec("b", "Bo", "https://h/b.jpg")]
    assert parse_characters([]) == []


def test_characters_refusals():
    assert refused(parse_characters, {"id": "a"}) == "field 'characters' must be a list"
    assert refused(parse_characters, "x", where="refs") == "field 'refs' must be a list"
    assert refused(parse_characters, [{"id": "a"}]) == "missing field 'characters[0].reference_image_url'"
    assert refused(parse_characters, [{"reference_image_url": "u"}]) == "missing field 'characters[0].id'"
    assert refused(parse_characters, [{"id": "a", "reference_image_url": "u", "name": 5}]) == \
        "field 'characters[0].name' must be str, got int"
    assert refused(parse_characters, [[]]) == "characters[0] must be a JSON object"
    assert refused(parse_characters, [{"id": "a", "reference_image_url": "u"}, {"id": "a", "reference_image_url": "v"}]) == \
        "field 'characters' has duplicate ids; each character needs its own id"
    assert refused(parse_characters, [{"id": "x" * (MAX_ID_CHARS + 1), "reference_image_url": "u"}]) == \
        f"field 'characters[0].id' is {MAX_ID_CHARS + 1} characters long; ids may have at most {MAX_ID_CHARS}"
    assert refused(parse_characters, [{"id": 1.5, "reference_image_url": "u"}]) == \
        "field 'characters[0].id' must be str or int, got float"
    assert refused(parse_characters, [{"id": True, "reference_image_url": "u"}]) == \
        "field 'characters[0].id' must be str or int, got a boolean"


# --- types, numbers, text ----------------------------------------------------------------

@pytest.mark.parametrize("value,message", [
    (float("nan"), f"field 'sample_fps' must be a finite number of magnitude at most {MAX_NUMBER:g}"),
    (float("inf"), f"field 'sample_fps' must be a finite number of magnitude at most {MAX_NUMBER:g}"),
    (10 ** 400, f"field 'sample_fps' must be a finite number of magnitude at most {MAX_NUMBER:g}"),
    (-MAX_NUMBER * 2, f"field 'sample_fps' must be a finite number of magnitude at most {MAX_NUMBER:g}"),
    (True, "field 'sample_fps' must be int or float, got a boolean"),
    ("3", "field 'sample_fps' must be int or float, got str"),
])
def test_numbers_must_be_finite_and_not_booleans(value, message):
    assert refused(parse_detect, {"video_url": "u", "sample_fps": value}) == message


def test_lone_surrogate_is_not_text():
    assert is_text("héllo ✓") and not is_text("a\ud800b")
    assert refused(parse_detect, {"video_url": "http://h/\ud800"}) == \
        "field 'video_url' is not valid Unicode text (it holds a lone surrogate such as \\ud800)"


def test_shown_cuts_long_values():
    assert shown("abc") == "'abc'"
    assert shown("x" * 58) == "'" + "x" * 58 + "'"  # 60 characters: kept whole
    assert shown("x" * 59) == "'" + "x" * 59 + "... (61 characters)"


def test_check_json_depth_bound():
    deep = []
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    check_json({"a": deep})  # MAX_DEPTH levels: accepted
    path = "a" + "[0]" * MAX_DEPTH
    assert refused(check_json, {"a": [deep]}) == \
        f"request body nests arrays or objects more than {MAX_DEPTH} levels deep (at {shown(path)})"


def test_check_json_names_the_bad_string():
    assert refused(check_json, {"faces": [{"character_id": "\udc00"}]}) == \
        "field 'faces[0].character_id' is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
    assert refused(check_json, {"faces": {"\ud800": 1}}) == \
        "a key in 'faces' is not valid Unicode text (it holds a lone surrogate)"
    check_json({"ok": ["text", 1, None, {"k": "v"}]})


# --- lipsync -----------------------------------------------------------------------------

def test_lipsync_defaults():
    request = parse_lipsync(lipsync())
    assert (request.auto, request.enhance_quality, request.fidelity_weight, request.sync_mode,
            request.expressiveness, request.voices, request.characters) == (False, False, 0.7, "silence", 0.5, {}, [])
    assert request.faces == parse_faces([face()])


@pytest.mark.parametrize("weight", [0, 0.3, 1])
def test_fidelity_weight_in_range(weight):
    assert parse_lipsync(lipsync(fidelity_weight=weight)).fidelity_weight == weight


@pytest.mark.parametrize("weight", [-0.001, 1.001])
def test_fidelity_weight_out_of_range(weight):
    assert refused(parse_lipsync, lipsync(fidelity_weight=weight)) == \
        f"field 'fidelity_weight' must be in [0, 1], not {weight:g}"


@pytest.mark.parametrize("mode", ["silence", "cut_off", "loop", "bounce"])
def test_every_sync_mode_is_accepted(mode):
    assert parse_lipsync(lipsync(sync_mode=mode)).sync_mode == mode


def test_unknown_sync_mode_is_refused():
    assert refused(parse_lipsync, lipsync(sync_mode="stretch")) == \
        "field 'sync_mode' must be one of silence, cut_off, loop, bounce, not 'stretch'"
    assert refused(check_lipsync_options, 0.5, 0.5, "x", names=("-f", "-e", "--sync-mode")) == \
        "--sync-mode must be one of silence, cut_off, loop, bounce, not 'x'"
    assert refused(check_lipsync_options, 2, 0.5, "loop", names=("--fidelity", "-e", "-s")) == \
        "--fidelity must be in [0, 1], not 2"
    assert refused(check_lipsync_options, 0.5, 2, "loop", names=("-f", "--expressiveness", "-s")) == \
        "--expressiveness must be in [0, 1] (0.5 moves the mouth as the engine does)"


@pytest.mark.parametrize("value", [-0.001, 1.001])
def test_request_expressiveness_out_of_range(value):
    assert refused(parse_lipsync, lipsync(expressiveness=value)) == \
        "field 'expressiveness' must be in [0, 1] (0.5 moves the mouth as the engine does)"


def test_upload_url_required_unless_told_otherwise():
    body = lipsync()
    del body["upload_url"]
    assert refused(parse_lipsync, body) == "missing field 'upload_url'"
    assert parse_lipsync(body, require_upload=False).upload_url is None
    assert parse_lipsync({**body, "upload_url": "https://h/o"}, require_upload=False).upload_url == "https://h/o"


def test_enhance_quality_is_a_boolean():
    assert parse_lipsync(lipsync(enhance_quality=True)).enhance_quality is True
    assert refused(parse_lipsync, lipsync(enhance_quality=1)) == "field 'enhance_quality' must be bool, got int"


def test_auto_mode_when_faces_are_left_out_or_auto_is_true():
    body = lipsync()
    del body["faces"]
    assert parse_lipsync(body).auto is True and parse_lipsync(body).faces is None
    request = parse_lipsync(lipsync(auto=True, faces=[{"character_id": "face_2", "expressiveness": 0.2}]))
    assert request.auto is True and request.faces is None
    assert request.voices == {"face_2": Voice(None, 0.0, 0.2)}
    assert parse_lipsync(lipsync(auto=False)).auto is False


def test_audio_url_may_be_left_out_only_when_every_face_has_a_stem():
    body = lipsync(faces=[face(audio_url="https://h/s1.wav"), face(character_id="bob", audio_url="https://h/s2.wav")])
    del body["audio_url"]
    assert parse_lipsync(body).audio_url is None
    message = ("missing field 'audio_url' (it may be left out only when every entry of faces[] "
               "has its own audio_url: the output track is then those stems mixed)")
    assert refused(parse_lipsync, {**body, "faces": [face(audio_url="https://h/s1.wav"), face(character_id="bob")]}) == message
    auto = {**body, "auto": True, "faces": [{"character_id": "face_1", "audio_url": "https://h/s.wav"}]}
    assert parse_lipsync(auto).audio_url is None
    assert refused(parse_lipsync, {**auto, "faces": []}) == message
    assert refused(parse_lipsync, {**auto, "faces": [{"character_id": "face_1"}]}) == message


def test_auto_voices():
    assert parse_voices([{"character_id": 3}]) == {"3": Voice()}
    assert refused(parse_voices, {"character_id": 3}) == "field 'faces' must be a list"
    assert refused(parse_voices, [{"character_id": "a"}, {"character_id": "a"}]) == \
        "field 'faces[1]' repeats character_id 'a'; in auto mode give each person once"
    check_auto_voices({"face_12": Voice(), "alice": Voice()}, ["alice"])
    assert refused(check_auto_voices, {"alice": Voice(), "bob": Voice()}, ["alice", "carol"]) == (
        "field 'faces[1].character_id' 'bob' names no one auto mode can find: give one of the characters[] ids "
        "('alice', 'carol') or a face_N name from detect-faces")
    assert refused(check_auto_voices, {"face_x": Voice()}, []) == (
        "field 'faces[0].character_id' 'face_x' names no one auto mode can find: give a face_N name from detect-faces")
    assert refused(check_auto_voices, {"face_1b": Voice()}, [], where="voices") == (
        "field 'voices[0].character_id' 'face_1b' names no one auto mode can find: give a face_N name from detect-faces")


def test_body_must_be_an_object():
    assert refused(parse_lipsync, []) == "body must be a JSON object"
    assert refused(parse_detect, "x") == "body must be a JSON object"


def test_requests_carry_their_characters_and_video_url():
    refs = [{"id": "a", "reference_image_url": "https://h/a.jpg"}]
    assert parse_detect({"video_url": "https://h/v.mp4", "characters": refs}).characters == [
        CharacterSpec("a", None, "https://h/a.jpg")]
    request = parse_lipsync(lipsync(characters=refs))
    assert request.characters == [CharacterSpec("a", None, "https://h/a.jpg")]
    assert (request.video_url, request.audio_url, request.upload_url) == ("https://h/v.mp4", "https://h/a.wav", "https://h/out")


@pytest.mark.parametrize("field,value,message", [
    ("audio_url", 5, "field 'faces[0].audio_url' must be str, got int"),
    ("audio_offset_ms", "soon", "field 'faces[0].audio_offset_ms' must be int or float, got str"),
    ("expressiveness", "wide", "field 'faces[0].expressiveness' must be int or float, got str"),
])
def test_voice_fields_are_named_with_their_face(field, value, message):
    assert refused(parse_faces, [face(**{field: value})]) == message
    auto = [{"character_id": "face_1", field: value}]
    assert refused(parse_voices, auto) == message


def test_auto_voices_name_their_index():
    assert refused(parse_voices, [{"character_id": "a"}, 5]) == "faces[1] must be a JSON object"
    assert refused(parse_voices, [{}]) == "missing field 'faces[0].character_id'"
    assert parse_voices([{"character_id": "a", "audio_url": "https://h/s.wav", "audio_offset_ms": 20}]) == {
        "a": Voice("https://h/s.wav", 20.0, None)}
