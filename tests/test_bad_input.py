"""Every kind of bad input ends in the rejected table with its exact reason."""

import base64
import io
import tarfile
import zipfile

import pytest
from PIL import Image

from assets.chatml.normalize import accounting, normalize_source
from assets.contract.cleaning import clean_text
from assets.contract.media import MediaResolver
from assets.sources.hub import unpack_archives
from assets.sources.registry import get_source


@pytest.fixture
def media(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.jpg")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "b.jpg")
    return MediaResolver([tmp_path], tmp_path / "inline")


def _llava(convs, image="a.jpg"):
    return {"id": "x", "image": image, "conversations": convs}


def _h(v):
    return {"from": "human", "value": v}


def _g(v):
    return {"from": "gpt", "value": v}


CASES = [
    ("missing field", _llava(None), "malformed_row", "missing field 'conversations'"),
    ("wrong type", _llava("hello"), "malformed_row", "field 'conversations' is str, expected list"),
    ("turn not an object", _llava(["hi"]), "malformed_row", "turn is str, expected object"),
    ("value null", _llava([_h(None), _g("x")]), "malformed_row", "turn field 'value' is NoneType, expected str"),
    ("missing image", _llava([_h("<image>\nWhat?"), _g("x")], image="gone.jpg"), "missing_media", "file not found: gone.jpg"),
    ("empty conversation", _llava([]), "empty_conversation", "no turns"),
    ("wrong role", _llava([_h("<image>\nWhat?"), {"from": "bot", "value": "x"}]), "invalid_role", "unknown role 'bot'"),
    ("two placeholders one image", _llava([_h("<image><image>\nWhat?"), _g("x")]), "media_placeholder_mismatch",
     "2 placeholder(s) in text but 1 media item(s)"),
    ("assistant first", _llava([_g("x"), _h("<image>\nWhat?")]), "invalid_turn_order", "turn 0 is 'assistant', expected 'user'"),
    ("two user turns", _llava([_h("<image>\nWhat?"), _h("And?"), _g("x")]), "invalid_turn_order",
     "turn 1 is 'user', expected 'assistant'"),
    ("unanswered", _llava([_h("<image>\nWhat?")]), "invalid_turn_order", "conversation ends without an assistant reply"),
    ("only special tokens", _llava([_h("<image>\nWhat?"), _g("<|im_end|><|endoftext|>")]), "empty_message",
     "turn 1 (assistant) is empty after cleaning"),
]


@pytest.mark.parametrize("label,record,reason,detail", CASES, ids=[c[0] for c in CASES])
def test_llava_record_rejected_with_reason(media, label, record, reason, detail):
    result = normalize_source(get_source("llava_instruct"), [record], media)
    assert not result.conversations
    (rej,) = result.rejections
    assert (rej.reason, rej.detail) == (reason, detail)
    assert rej.stage == "chatml" and rej.source_rows == [0] and rej.record
    assert accounting(result)[0]


def test_duplicate_rows_keep_the_first_and_reject_the_rest(media):
    good = _llava([_h("<image>\nWhat?"), _g("Red.")])
    result = normalize_source(get_source("llava_instruct"), [good, dict(good), dict(good)], media)
    assert len(result.conversations) == 1
    assert [(r.reason, r.detail, r.source_rows) for r in result.rejections] == [
        ("duplicate_row", "same content as source row(s) [0]", [1]),
        ("duplicate_row", "same content as source row(s) [0]", [2]),
    ]


def test_m3it_bad_base64_and_empty_image(media):
    spec = get_source("m3it")
    rows = [
        {"instruction": "Caption.", "inputs": "", "outputs": "Red.", "image_base64_str": ["not base64!"]},
        {"instruction": "Caption.", "inputs": "", "outputs": "Red.", "image": {"bytes": None, "path": None}},
        {"instruction": "Caption.", "inputs": 3, "outputs": "Red."},
    ]
    result = normalize_source(spec, rows, media)
    assert [r.reason for r in result.rejections] == ["malformed_row", "missing_media", "malformed_row"]
    assert result.rejections[0].detail.startswith("image is not valid base64")
    assert result.rejections[2].detail == "field 'inputs' is int, expected str"


def test_m3it_good_base64_is_written_to_disk(media):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buf, format="JPEG")
    row = {"instruction": "Caption.", "inputs": "", "outputs": "Green.", "image_base64_str": [base64.b64encode(buf.getvalue()).decode()]}
    (conv,) = normalize_source(get_source("m3it"), [row], media).conversations
    path = conv.messages[0]["content"][0]["path"]
    assert Image.open(path).size == (8, 8)


def test_non_dict_record_is_malformed(media):
    result = normalize_source(get_source("longalpaca"), ["just a string"], media)
    assert result.rejections[0].reason == "malformed_row"


def test_mlvu_answer_outside_candidates(media):
    row = {"video": "a.jpg", "question": "Q?", "candidates": ["x", "y"], "answer": "z"}
    result = normalize_source(get_source("mlvu"), [row], media)
    assert (result.rejections[0].reason, result.rejections[0].detail) == (
        "malformed_row", "answer 'z' is not one of the candidates")


def test_clean_text_removes_tokens_and_stray_symbols():
    assert clean_text("a<|im_start|>b<|im_end|>c</s>[INST]d") == "abcd"
    assert clean_text("x\u200by\ufffdz\x07") == "xyz"
    assert clean_text("one  \r\n\r\n\r\n\r\ntwo") == "one\n\ntwo"


def test_archive_members_escaping_the_folder_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="escapes the folder"):
        unpack_archives(tmp_path, ("*.zip",))
    assert not (tmp_path.parent / "outside.txt").exists()


def test_archives_are_unpacked_once(tmp_path):
    src = tmp_path / "v.txt"
    src.write_text("1")
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        tf.add(src, "sub/v.txt")
    assert unpack_archives(tmp_path, ("*.tar.gz",)) == [tmp_path / "a.tar.gz"]
    assert (tmp_path / "sub" / "v.txt").read_text() == "1"
    assert unpack_archives(tmp_path, ("*.tar.gz",)) == []
