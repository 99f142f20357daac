"""CVAT "for video 1.1" XML: read a task's person tracks and turn them into :class:`VideoTracks`.

The layout, as CVAT's exporter writes it (``cvat/apps/dataset_manager/formats/cvat.py`` and
``bindings.py``)::

    <annotations>
      <version>1.1</version>
      <meta>
        <task>                                  (<job> for a job export)
          <id/> <name/> <size/> <mode>interpolation</mode> <start_frame/> <stop_frame/> <frame_filter/>
          <labels><label><name>person</name>
            <attributes><attribute><name>walk</name><mutable>True</mutable>
              <input_type>checkbox|select|radio|number|text</input_type>
              <default_value/><values>one per line</values></attribute></attributes>
          </label></labels>
          <original_size><width/><height/></original_size>     (inside <meta> for a job export)
          <source>video file name</source>
        </task>
      </meta>
      <track id="0" label="person" source="manual" [group_id="1"]>
        <box frame="12" outside="0|1" occluded="0|1" keyframe="0|1" xtl ytl xbr ybr z_order="0">
          <attribute name="walk">true</attribute> ...
        </box> ...
      </track>
    </annotations>

Frame numbers are those of the source video (``start_frame + k * step``). The exporter writes a box for
every task frame of a track (interpolated ones with ``keyframe="0"``), carrying each box's attributes
until the next keyframe; after an ``outside="1"`` box nothing is written until the track reappears, and
after its last box a track holds until the task's last frame. Files with only keyframes (hand-written,
or trimmed) are read by the same rules: linear interpolation between boxes, never past an outside box,
the last box held to ``stop_frame``. Track-level (immutable) attributes are repeated on every box.

Boxes are pixels of ``original_size`` (the video as uploaded). Parsing uses the standard library's
expat with entity declarations refused (no entity expansion from untrusted files).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.parsers import expat

from data_prep.convert import ConversionError, PersonTrack, TrackBox, VideoTracks, _Errors

__all__ = [
    "CvatAttributeSpec",
    "CvatBox",
    "CvatLabel",
    "CvatTrack",
    "CvatVideo",
    "DEFAULT_PERSON_LABELS",
    "cvat_video_tracks",
    "read_cvat_video_xml",
]

DEFAULT_PERSON_LABELS = ("person",)
_UNDEFINED = "__undefined__"  # CVAT's "no value" of a select/radio attribute


@dataclass(frozen=True)
class CvatAttributeSpec:
    """An attribute declared for a label: ``input_type`` is checkbox, select, radio, number or text."""

    name: str
    input_type: str
    values: tuple[str, ...] = ()
    mutable: bool = True


@dataclass(frozen=True)
class CvatLabel:
    name: str
    attributes: tuple[CvatAttributeSpec, ...] = ()


@dataclass(frozen=True)
class CvatBox:
    """One ``<box>`` of a track: pixel corners, flags, and its attributes (name → text)."""

    frame: int
    xtl: float
    ytl: float
    xbr: float
    ybr: float
    outside: bool
    occluded: bool
    keyframe: bool
    attributes: dict[str, str]
    line: int


@dataclass
class CvatTrack:
    id: int
    label: str
    boxes: list[CvatBox]
    line: int
    group_id: int = 0


@dataclass
class CvatVideo:
    """A parsed CVAT for video file: the task's metadata, declared labels, and box tracks.

    ``source`` is the video file name CVAT recorded (None in job exports); ``width``/``height`` its
    ``original_size``; ``stop_frame`` the last frame of the task (None when not recorded).
    """

    path: Path
    version: str
    name: str
    source: str | None
    width: int | None
    height: int | None
    size: int | None
    start_frame: int
    stop_frame: int | None
    labels: dict[str, CvatLabel] = field(default_factory=dict)
    tracks: list[CvatTrack] = field(default_factory=list)


def _parse_with_lines(path: Path) -> tuple[ET.Element, dict[int, int]]:
    """Parse ``path`` into an ElementTree, with the line of every element (keyed by ``id(element)``)."""
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    def refuse_entities(name: str, *_: object) -> None:
        raise ConversionError([f"{path}:{parser.CurrentLineNumber}: entity declarations are not accepted ({name})"])

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.EntityDeclHandler = refuse_entities
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as err:
        raise ConversionError([f"{path}:{err.lineno}: not well-formed XML: {expat.ErrorString(err.code)}"]) from None
    except OSError as err:
        raise ConversionError([f"{path}: cannot read: {err}"]) from None
    return builder.close(), lines


def _text(element: ET.Element | None, tag: str) -> str | None:
    child = element.find(tag) if element is not None else None
    return None if child is None or child.text is None else child.text.strip()


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_cvat_video_xml(path: str | os.PathLike) -> CvatVideo:
    """Read a CVAT "for video 1.1" task (or job) export.

    Keeps the ``<track>``s of boxes (other shapes are skipped). Raises ConversionError listing every
    problem as ``file:line: track T, frame F: what``: malformed XML, a "for images" export, missing or
    non-numeric box attributes, duplicate track ids, two boxes of one track at the same frame.
    """
    path = Path(path)
    root, lines = _parse_with_lines(path)
    errors = _Errors()
    if root.tag != "annotations":
        raise ConversionError([f"{path}:{lines.get(id(root), 1)}: root element is <{root.tag}>, expected "
                               f"<annotations> (a CVAT XML export)"])
    if root.find("image") is not None and root.find("track") is None:
        raise ConversionError([f"{path}: this is a 'CVAT for images' export; export the task as 'CVAT for video 1.1'"])
    meta = root.find("meta")
    if meta is not None and meta.find("project") is not None:
        raise ConversionError([f"{path}: a project export; export each task as 'CVAT for video 1.1' (one per video)"])
    task = None if meta is None else (meta.find("task") if meta.find("task") is not None else meta.find("job"))
    size_el = None if meta is None else meta.find(".//original_size")
    labels: dict[str, CvatLabel] = {}
    for label in [] if task is None else task.iterfind("labels/label"):
        specs = []
        for attr in label.iterfind("attributes/attribute"):
            values = tuple(v.strip() for v in (_text(attr, "values") or "").splitlines() if v.strip())
            specs.append(CvatAttributeSpec(
                name=_text(attr, "name") or "",
                input_type=(_text(attr, "input_type") or "").lower(),
                values=values,
                mutable=(_text(attr, "mutable") or "true").lower() == "true",
            ))
        name = _text(label, "name") or ""
        labels[name] = CvatLabel(name, tuple(specs))
    video = CvatVideo(
        path=path,
        version=(_text(root, "version") or ""),
        name=_text(task, "name") or path.stem,
        source=_text(task, "source") or None,
        width=_int_or_none(_text(size_el, "width")),
        height=_int_or_none(_text(size_el, "height")),
        size=_int_or_none(_text(task, "size")),
        start_frame=_int_or_none(_text(task, "start_frame")) or 0,
        stop_frame=_int_or_none(_text(task, "stop_frame")),
        labels=labels,
    )
    seen_ids: dict[int, int] = {}
    for element in root.iterfind("track"):
        line = lines.get(id(element), 0)
        try:
            track_id = int(element.get("id", ""))
            group_id = int(element.get("group_id", "0") or 0)
        except ValueError:
            errors.add(f"{path}:{line}: track id/group_id is not an integer: {element.get('id')!r}")
            continue
        if track_id in seen_ids:
            errors.add(f"{path}:{line}: track {track_id} is defined twice (also line {seen_ids[track_id]})")
            continue
        seen_ids[track_id] = line
        track = CvatTrack(track_id, element.get("label", ""), [], line, group_id)
        frames: dict[int, int] = {}
        for box in element.iterfind("box"):
            box_line = lines.get(id(box), 0)
            where = f"{path}:{box_line}: track {track_id}"
            try:
                frame = int(box.get("frame", ""))
                coords = [float(box.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr")]
                flags = [box.get(k, "0").strip() for k in ("outside", "occluded", "keyframe")]
            except ValueError:
                errors.add(f"{where}: <box> needs an integer frame and numeric xtl, ytl, xbr, ybr; got "
                           f"{ {k: box.get(k) for k in ('frame', 'xtl', 'ytl', 'xbr', 'ybr')} }")
                continue
            if frame < 0 or not all(math.isfinite(c) for c in coords) or any(f not in ("0", "1") for f in flags):
                errors.add(f"{where}, frame {frame}: negative frame, non-finite coordinate or a flag other than 0/1")
                continue
            if frame in frames:
                errors.add(f"{where}, frame {frame}: a second box at this frame (also line {frames[frame]})")
                continue
            frames[frame] = box_line
            attributes = {a.get("name", ""): (a.text or "").strip() for a in box.iterfind("attribute")}
            track.boxes.append(CvatBox(frame, *coords, flags[0] == "1", flags[1] == "1", flags[2] == "1",
                                       attributes, box_line))
        if track.boxes:
            track.boxes.sort(key=lambda b: b.frame)
            video.tracks.append(track)
    errors.raise_if_any()
    return video


def _action_attributes(label: CvatLabel | None, box_attrs: dict[str, str],
                       only: set[str] | None) -> list[tuple[str, str]]:
    """(attribute name, input type) of the attributes that carry actions on a person's boxes."""
    specs = {a.name: a for a in label.attributes} if label is not None else {}
    names = list(specs) + [n for n in box_attrs if n not in specs]
    result = []
    for name in names:
        if only is not None and name not in only:
            continue
        spec = specs.get(name)
        if spec is not None:
            kind = spec.input_type
        else:  # undeclared: a checkbox when its value reads as one
            kind = "checkbox" if box_attrs.get(name, "").lower() in ("true", "false") else "select"
        if kind in ("checkbox", "select", "radio") or (only is not None and kind == "text"):
            result.append((name, kind))
    return result


def cvat_video_tracks(
    video: CvatVideo,
    *,
    actions_from: Literal["auto", "attributes", "label"] = "auto",
    person_labels: Sequence[str] | None = None,
    action_attributes: Sequence[str] | None = None,
) -> VideoTracks:
    """The person tracks of a parsed CVAT video, with their actions, for :func:`~data_prep.convert.convert_dataset`.

    Actions come from the boxes' attributes of person tracks (``"attributes"``: a checkbox attribute
    set to ``true`` is the action of its name; a select/radio attribute's value is the action, unless it
    is empty or ``__undefined__``), from the labels of the other tracks (``"label"``: a track labelled
    ``"walk"`` is a person walking), or both (``"auto"``). ``person_labels`` (case-insensitive; default
    ``person``) name the person tracks; in ``"attributes"`` mode a file with a single label takes it as
    the person label. ``action_attributes`` limits which attributes count (text attributes count only
    when named here). The video is the task's ``<source>`` (else its name); pixel boxes refer to
    ``original_size``.
    """
    if actions_from not in ("auto", "attributes", "label"):
        raise ValueError(f"actions_from must be auto, attributes or label, got {actions_from!r}")
    persons = {p.lower() for p in (person_labels or DEFAULT_PERSON_LABELS)}
    all_labels = set(video.labels) | {t.label for t in video.tracks}
    if actions_from == "attributes" and len(all_labels) == 1 and not persons & {x.lower() for x in all_labels}:
        persons = {next(iter(all_labels)).lower()}
    only = set(action_attributes) if action_attributes else None
    use_attributes = actions_from in ("auto", "attributes")
    use_labels = actions_from in ("auto", "label")

    declared: list[str] = []
    for label in video.labels.values():
        if label.name.lower() in persons:
            if use_attributes:
                for spec in label.attributes:
                    if only is not None and spec.name not in only:
                        continue
                    if spec.input_type == "checkbox":
                        declared.append(spec.name)
                    elif spec.input_type in ("select", "radio"):
                        declared += [v for v in spec.values if v != _UNDEFINED]
        elif use_labels:
            declared.append(label.name)

    end_frame = None
    if video.stop_frame is not None:
        end_frame = video.stop_frame + 1
    elif video.size is not None:
        end_frame = video.start_frame + video.size
    tracks = []
    for track in video.tracks:
        is_person = track.label.lower() in persons
        if (is_person and not use_attributes) or (not is_person and not use_labels):
            continue  # a person track without action attributes wanted, or a non-person object
        label = video.labels.get(track.label)
        boxes = []
        for b in track.boxes:
            if is_person:
                actions = []
                for name, kind in _action_attributes(label, b.attributes, only):
                    value = b.attributes.get(name, "")
                    if kind == "checkbox":
                        if value.lower() == "true":
                            actions.append(name)
                    elif value and value != _UNDEFINED:
                        actions.append(value)
            else:
                actions = [track.label]
            boxes.append(TrackBox(
                frame=b.frame, time_s=None, box=(b.xtl, b.ytl, b.xbr, b.ybr),
                actions=tuple(dict.fromkeys(actions)), outside=b.outside,
                where=f"{video.path}:{b.line}: track {track.id}, frame {b.frame}",
            ))
        tracks.append(PersonTrack(str(track.id), boxes, where=f"{video.path}:{track.line}: track {track.id}",
                                  end_frame=end_frame, max_gap_s=None))
    size = (video.width, video.height) if video.width and video.height else None
    return VideoTracks(
        video=video.source or video.name,
        tracks=tracks,
        source=str(video.path),
        units="pixels",
        frame_size=size,
        declared_actions=tuple(dict.fromkeys(declared)),
        where=f"{video.path}",
        format="cvat",
    )
