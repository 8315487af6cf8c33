"""Annotation formats: path-label lists, raw-frame lists, SSv2 JSON, ImageFolder; errors name file and line."""

from __future__ import annotations

import json

import pytest

from vidprior.data.lists import (
    read_class_names,
    read_rawframe_list,
    read_ssv2,
    read_video_list,
    scan_image_folder,
    ssv2_label_name,
)
from vidprior.errors import VidpriorError


@pytest.mark.parametrize(
    "text",
    [
        "a/x.mp4 3\nb/y.mp4 0\n",  # mmaction2 list
        "a/x.mp4,3\nb/y.mp4,0\n",  # comma CSV
        "path,label\na/x.mp4,3\nb/y.mp4,0\n",  # CSV with header
        "a/x.mp4\t3\n\nb/y.mp4\t0\n",  # tabs, blank line
        "a/x.mp4 3\n# comment\nb/y.mp4 0",  # comment, no final newline
    ],
)
def test_video_list_formats(tmp_path, text):
    (tmp_path / "list.txt").write_text(text)
    records = read_video_list(tmp_path / "list.txt", root="/data/k400")
    assert [(r.path, r.label, r.video_id) for r in records] == [
        ("/data/k400/a/x.mp4", 3, "x"),
        ("/data/k400/b/y.mp4", 0, "y"),
    ]


def test_class_names_and_multi_label(tmp_path):
    (tmp_path / "classes.txt").write_text("abseiling\nair drumming\n")
    (tmp_path / "list.csv").write_text("v1.mp4,air drumming\nv2.mp4,abseiling\n")
    records = read_video_list(tmp_path / "list.csv", classes=tmp_path / "classes.txt")
    assert [r.label for r in records] == [1, 0]
    (tmp_path / "ml.txt").write_text("v1.mp4 1 4 7\n")
    assert read_video_list(tmp_path / "ml.txt")[0].label == (1, 4, 7)
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(VidpriorError, match="'a' appears twice"):
        read_class_names(tmp_path / "dup.txt")


@pytest.mark.parametrize(
    "text,match",
    [
        ("a.mp4 1\nb.mp4\n", r"list.txt:2: expected 'path label'"),
        ("a.mp4 one\n", r"list.txt:1: label 'one' is not an integer \(give the class-name file"),
        ("a.mp4 -2\n", r"list.txt:1: label -2 is negative"),
        ("\n\n", r"no samples"),
    ],
)
def test_video_list_errors_name_file_and_line(tmp_path, text, match):
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(VidpriorError, match=match):
        read_video_list(tmp_path / "list.txt")
    with pytest.raises(VidpriorError, match="does not exist"):
        read_video_list(tmp_path / "nope.txt")


def test_rawframe_list(tmp_path):
    (tmp_path / "list.txt").write_text("vid_a 300 4\nvid_b 120 2\n")
    records = read_rawframe_list(tmp_path / "list.txt", root=tmp_path)
    assert [(r.path, r.num_frames, r.label) for r in records] == [
        (str(tmp_path / "vid_a"), 300, 4),
        (str(tmp_path / "vid_b"), 120, 2),
    ]
    (tmp_path / "bad.txt").write_text("vid_a many 4\n")
    with pytest.raises(VidpriorError, match=r"bad.txt:1: total_frames 'many'"):
        read_rawframe_list(tmp_path / "bad.txt")


def test_ssv2_official_json(tmp_path):
    labels = {"Holding something next to something": "1", "Pushing something from left to right": "0"}
    train = [
        {"id": "78687", "label": "holding potato next to vicks", "template": "Holding [something] next to [something]"},
        {"id": "42326", "label": "pushing pen", "template": "Pushing [something] from left to right"},
    ]
    test = [{"id": "1420"}]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(json.dumps(test))
    records, names = read_ssv2(tmp_path / "labels.json", tmp_path / "train.json", root="/ssv2")
    assert names == ["Pushing something from left to right", "Holding something next to something"]
    assert [(r.path, r.label, r.video_id) for r in records] == [
        ("/ssv2/78687.webm", 1, "78687"),
        ("/ssv2/42326.webm", 0, "42326"),
    ]
    records, _ = read_ssv2(tmp_path / "labels.json", tmp_path / "test.json", root="/ssv2")
    assert records[0].label == -1
    assert ssv2_label_name("Putting [something] onto [something else]") == "Putting something onto something else"
    (tmp_path / "odd.json").write_text(json.dumps([{"id": "7", "template": "Dancing with [something]"}]))
    with pytest.raises(VidpriorError, match=r"odd.json: entry 0 \(id 7\) has template 'Dancing with \[something\]'"):
        read_ssv2(tmp_path / "labels.json", tmp_path / "odd.json", root="/ssv2")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(VidpriorError, match=r"broken.json: invalid JSON"):
        read_ssv2(tmp_path / "broken.json", tmp_path / "train.json", root="/ssv2")


def test_image_folder(tmp_path):
    for cls, files in {"n02": ["b.JPEG", "a.jpg"], "n01": ["c.png"], "empty": []}.items():
        (tmp_path / cls).mkdir()
        for f in files:
            (tmp_path / cls / f).write_bytes(b"x")
    (tmp_path / "n01" / "notes.txt").write_text("not an image")
    records, classes = scan_image_folder(tmp_path)
    assert classes == ["empty", "n01", "n02"]
    assert [(r.path.split("/")[-1], r.label) for r in records] == [("c.png", 1), ("a.jpg", 2), ("b.JPEG", 2)]
