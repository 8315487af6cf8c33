"""Annotation formats users have, read into :class:`Record` lists.

* Video lists: one ``path label`` per line, separated by spaces, a comma or a tab (mmaction2 ``VideoDataset``
  lists, PySlowFast CSVs ``path label``, plain CSV); labels are integers, or class names when a class-name file is
  given (one name per line, line number = class id); more than one label per line makes a multi-label record.
* Raw-frame lists: ``frame_dir total_frames label`` (mmaction2 ``RawframeDataset``) with a filename template.
* Something-Something V2: the official ``labels.json`` (``{"Approaching something with your camera": "0", ...}``)
  and ``train.json`` / ``validation.json`` / ``test.json`` (``[{"id": "78687", "template": "Holding [something] next
  to [something]", ...}]``); the template with its ``[placeholders]`` normalised to ``something`` is the label name;
  videos are ``<root>/<id>.webm``.
* Image lists ``path label`` and the ImageFolder layout (``root/<class>/<image>``, classes sorted by name).

Every parse error names the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vidprior.errors import VidpriorError

#: What a folder scan takes as a video (compared lower-case): ``data check``, ``data reencode`` and :func:`scan_videos`.
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG")


@dataclass(frozen=True)
class Record:
    """One sample: a file (or frame folder), its label(s), and for raw frames the frame count."""

    path: str
    label: int | tuple[int, ...]
    num_frames: int | None = None
    video_id: str = field(default="")


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (blank lines ignored); line order = class id."""
    p = Path(path)
    if not p.is_file():
        raise VidpriorError(f"class-name file {p} does not exist")
    names = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise VidpriorError(f"{p}: class name {dup!r} appears twice")
    return names


def _split(line: str) -> list[str]:
    if "," in line:
        return [t.strip() for t in line.split(",")]
    return line.split()


def _label(token: str, classes: dict[str, int] | None, where: str) -> int:
    if classes is not None and token in classes:
        return classes[token]
    try:
        value = int(token)
    except ValueError:
        hint = " (give the class-name file with classes=...)" if classes is None else " (not in the class-name file)"
        raise VidpriorError(f"{where}: label {token!r} is not an integer{hint}") from None
    if value < 0:
        raise VidpriorError(f"{where}: label {value} is negative")
    return value


def _resolve(root: Path | None, rel: str) -> str:
    return str(root / rel) if root is not None and not Path(rel).is_absolute() else rel


def read_video_list(
    list_file: str | Path, *, root: str | Path | None = None, classes: str | Path | list[str] | None = None
) -> list[Record]:
    """Read a ``path label`` list (space, comma or tab separated; a header line ``path,label`` is skipped)."""
    p = Path(list_file)
    if not p.is_file():
        raise VidpriorError(f"list file {p} does not exist")
    names = read_class_names(classes) if isinstance(classes, (str, Path)) else classes
    lookup = {n: i for i, n in enumerate(names)} if names is not None else None
    base = Path(root) if root is not None else None
    records = []
    for n, raw in enumerate(p.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = _split(line)
        where = f"{p}:{n}"
        if n == 1 and tokens[:2] in (["path", "label"], ["video", "label"]):
            continue  # CSV header
        if len(tokens) < 2:
            raise VidpriorError(f"{where}: expected 'path label', got {line!r}")
        labels = tuple(_label(t, lookup, where) for t in tokens[1:] if t != "")
        if not labels:
            raise VidpriorError(f"{where}: no label in {line!r}")
        path = tokens[0]
        records.append(Record(_resolve(base, path), labels[0] if len(labels) == 1 else labels, None, Path(path).stem))
    if not records:
        raise VidpriorError(f"{p}: no samples")
    return records


def read_rawframe_list(list_file: str | Path, *, root: str | Path | None = None) -> list[Record]:
    """Read ``frame_dir total_frames label`` lines (mmaction2 raw-frame lists)."""
    p = Path(list_file)
    if not p.is_file():
        raise VidpriorError(f"list file {p} does not exist")
    base = Path(root) if root is not None else None
    records = []
    for n, raw in enumerate(p.read_text().splitlines(), start=1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{p}:{n}"
        if len(tokens) < 3:
            raise VidpriorError(f"{where}: expected 'frame_dir total_frames label', got {raw.strip()!r}")
        try:
            total = int(tokens[1])
        except ValueError:
            raise VidpriorError(f"{where}: total_frames {tokens[1]!r} is not an integer") from None
        labels = tuple(_label(t, None, where) for t in tokens[2:])
        records.append(
            Record(_resolve(base, tokens[0]), labels[0] if len(labels) == 1 else labels, total, Path(tokens[0]).name)
        )
    if not records:
        raise VidpriorError(f"{p}: no samples")
    return records


def ssv2_label_name(template: str) -> str:
    """``"Putting [something] onto [something]"`` -> ``"Putting something onto something"``."""
    return re.sub(r"\[([^\]]*)\]", r"\1", template).strip()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise VidpriorError(f"{path}: invalid JSON ({e})") from None


def read_ssv2(
    labels_json: str | Path, split_json: str | Path, *, root: str | Path, suffix: str = ".webm"
) -> tuple[list[Record], list[str]]:
    """Read Something-Something V2's official JSON files. Returns ``(records, class_names)``.

    Test-split entries carry no template; their label is -1.
    """
    lp, sp = Path(labels_json), Path(split_json)
    for f in (lp, sp):
        if not f.is_file():
            raise VidpriorError(f"SSv2 annotation file {f} does not exist")
    labels, split = _read_json(lp), _read_json(sp)
    if not isinstance(labels, dict) or not isinstance(split, list):
        raise VidpriorError(f"{lp} must hold an object of name -> id and {sp} a list of entries")
    ids = {name: int(i) for name, i in labels.items()}
    names = [""] * len(ids)
    for name, i in ids.items():
        if not 0 <= i < len(ids):
            raise VidpriorError(f"{lp}: class id {i} for {name!r} is out of range 0..{len(ids) - 1}")
        names[i] = name
    records = []
    for k, entry in enumerate(split):
        if not isinstance(entry, dict) or "id" not in entry:
            raise VidpriorError(f"{sp}: entry {k} has no 'id': {entry!r}"[:300])
        vid = str(entry["id"])
        if "template" in entry:
            name = ssv2_label_name(entry["template"])
            if name not in ids:
                raise VidpriorError(f"{sp}: entry {k} (id {vid}) has template {entry['template']!r}, not in {lp}")
            label = ids[name]
        else:
            label = -1
        records.append(Record(str(Path(root) / f"{vid}{suffix}"), label, None, vid))
    return records, names


def scan_image_folder(root: str | Path) -> tuple[list[Record], list[str]]:
    """ImageFolder layout: ``root/<class>/**/<image>``; classes sorted by folder name."""
    base = Path(root)
    if not base.is_dir():
        raise VidpriorError(f"image folder {base} does not exist")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not classes:
        raise VidpriorError(f"{base}: no class folders (expected root/<class>/<image>)")
    records = []
    for i, c in enumerate(classes):
        for f in sorted((base / c).rglob("*")):
            if f.suffix in IMAGE_SUFFIXES or f.suffix.lower() in IMAGE_SUFFIXES:
                records.append(Record(str(f), i, None, f.stem))
    if not records:
        raise VidpriorError(f"{base}: no images with suffixes {IMAGE_SUFFIXES}")
    return records, classes


def scan_videos(root: str | Path) -> list[Record]:
    """Every video file under ``root`` (label -1), for checking or re-encoding a folder."""
    base = Path(root)
    if not base.is_dir():
        raise VidpriorError(f"video folder {base} does not exist")
    return [Record(str(f), -1, None, f.stem) for f in sorted(base.rglob("*")) if f.suffix.lower() in VIDEO_SUFFIXES]
