"""CVAT "for video 1.1" XML reader: metadata, tracks, actions from attributes or labels, errors with lines."""

from pathlib import Path

import pytest

from data_prep.convert import ConversionError
from data_prep.cvat import cvat_video_tracks, read_cvat_video_xml

META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>my task</name>
      <size>30</size>
      <mode>interpolation</mode>
      <overlap>5</overlap>
      <start_frame>0</start_frame>
      <stop_frame>29</stop_frame>
      <frame_filter></frame_filter>
      <labels>
        <label>
          <name>person</name>
          <color>#ff0000</color>
          <type>rectangle</type>
          <attributes>
            <attribute>
              <name>walk</name>
              <mutable>True</mutable>
              <input_type>checkbox</input_type>
              <default_value>false</default_value>
              <values>false</values>
            </attribute>
            <attribute>
              <name>pose</name>
              <mutable>True</mutable>
              <input_type>select</input_type>
              <default_value>__undefined__</default_value>
              <values>__undefined__
stand
sit</values>
            </attribute>
            <attribute>
              <name>note</name>
              <mutable>False</mutable>
              <input_type>text</input_type>
              <default_value></default_value>
              <values></values>
            </attribute>
          </attributes>
        </label>
        <label>
          <name>wave</name>
          <attributes></attributes>
        </label>
      </labels>
      <original_size>
        <width>640</width>
        <height>480</height>
      </original_size>
      <source>clip01.mp4</source>
    </task>
    <dumped>2024-01-01 00:00:00.000000+00:00</dumped>
  </meta>
"""

TRACKS = """  <track id="0" label="person" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="10.00" ytl="20.00" xbr="110.00" ybr="220.00" z_order="0">
      <attribute name="walk">true</attribute>
      <attribute name="pose">stand</attribute>
      <attribute name="note">hello</attribute>
    </box>
    <box frame="10" outside="1" occluded="1" keyframe="1" xtl="20.00" ytl="20.00" xbr="120.00" ybr="220.00" z_order="0">
      <attribute name="walk">false</attribute>
      <attribute name="pose">__undefined__</attribute>
      <attribute name="note">hello</attribute>
    </box>
  </track>
  <track id="3" label="wave" source="manual" group_id="2">
    <box frame="5" outside="0" occluded="0" keyframe="1" xtl="1" ytl="2" xbr="3" ybr="4" z_order="0">
    </box>
  </track>
  <track id="4" label="person" source="manual">
    <polygon frame="5" outside="0" occluded="0" keyframe="1" points="1,2;3,4;5,6" z_order="0"></polygon>
  </track>
</annotations>
"""


def write(tmp_path: Path, text: str, name: str = "task.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_meta_labels_and_tracks(tmp_path):
    video = read_cvat_video_xml(write(tmp_path, META + TRACKS))
    assert (video.version, video.name, video.source) == ("1.1", "my task", "clip01.mp4")
    assert (video.width, video.height, video.size, video.start_frame, video.stop_frame) == (640, 480, 30, 0, 29)
    person = video.labels["person"]
    assert [(a.name, a.input_type, a.mutable) for a in person.attributes] == [
        ("walk", "checkbox", True), ("pose", "select", True), ("note", "text", False)]
    assert person.attributes[1].values == ("__undefined__", "stand", "sit")
    assert [t.id for t in video.tracks] == [0, 3]  # the polygon-only track is skipped
    first = video.tracks[0]
    assert (first.label, first.line) == ("person", META.count("\n") + 1)
    b0, b1 = first.boxes
    assert (b0.frame, b0.xtl, b0.ytl, b0.xbr, b0.ybr) == (0, 10.0, 20.0, 110.0, 220.0)
    assert (b0.outside, b0.occluded, b0.keyframe) == (False, False, True)
    assert b0.attributes == {"walk": "true", "pose": "stand", "note": "hello"}
    assert (b1.frame, b1.outside, b1.occluded) == (10, True, True)
    assert video.tracks[1].group_id == 2


def test_actions_from_attributes_labels_and_both(tmp_path):
    video = read_cvat_video_xml(write(tmp_path, META + TRACKS))

    auto = cvat_video_tracks(video)
    assert auto.video == "clip01.mp4" and auto.frame_size == (640, 480) and auto.units == "pixels"
    assert auto.declared_actions == ("walk", "stand", "sit", "wave")
    person, waver = auto.tracks
    assert person.track == "0" and person.end_frame == 30 and person.max_gap_s is None
    assert [b.actions for b in person.boxes] == [("walk", "stand"), ()]
    assert [b.outside for b in person.boxes] == [False, True]
    assert person.boxes[0].box == (10.0, 20.0, 110.0, 220.0) and person.boxes[0].frame == 0
    assert "task.xml:" in person.boxes[0].where and "track 0, frame 0" in person.boxes[0].where
    assert waver.track == "3" and waver.boxes[0].actions == ("wave",)

    attributes = cvat_video_tracks(video, actions_from="attributes")
    assert [t.track for t in attributes.tracks] == ["0"]
    assert attributes.declared_actions == ("walk", "stand", "sit")

    labels = cvat_video_tracks(video, actions_from="label")
    assert [t.track for t in labels.tracks] == ["3"] and labels.declared_actions == ("wave",)

    only_note = cvat_video_tracks(video, actions_from="attributes", action_attributes=["note"])
    assert only_note.tracks[0].boxes[0].actions == ("hello",)  # a text attribute, named explicitly

    # another person label: the "wave" tracks become the people, and "person" tracks are actions
    swapped = cvat_video_tracks(video, person_labels=["wave"])
    assert [t.track for t in swapped.tracks] == ["0", "3"]
    assert swapped.tracks[0].boxes[0].actions == ("person",)


def test_single_label_is_the_person_label_in_attribute_mode(tmp_path):
    text = (META.replace("<name>person</name>", "<name>human</name>")
            .replace("<label>\n          <name>wave</name>\n          <attributes></attributes>\n        </label>", "")
            + "  <track id=\"1\" label=\"human\"><box frame=\"2\" outside=\"0\" occluded=\"0\" keyframe=\"1\" "
              "xtl=\"1\" ytl=\"1\" xbr=\"5\" ybr=\"5\"><attribute name=\"walk\">true</attribute></box></track>\n"
              "</annotations>\n")
    tracks = cvat_video_tracks(read_cvat_video_xml(write(tmp_path, text)), actions_from="attributes")
    assert tracks.tracks[0].boxes[0].actions == ("walk",)


def test_job_export_meta(tmp_path):
    text = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><job><id>3</id><size>10</size><mode>interpolation</mode><start_frame>5</start_frame><stop_frame>14</stop_frame>
<labels><label><name>person</name><attributes/></label></labels></job>
<original_size><width>64</width><height>48</height></original_size></meta>
<track id="0" label="person">
  <box frame="6" outside="0" occluded="0" keyframe="1" xtl="1" ytl="1" xbr="5" ybr="5"/>
</track>
</annotations>"""
    video = read_cvat_video_xml(write(tmp_path, text, "job_3.xml"))
    assert (video.source, video.name, video.width, video.height) == (None, "job_3", 64, 48)
    assert (video.start_frame, video.stop_frame) == (5, 14)
    assert cvat_video_tracks(video).video == "job_3"  # no <source>: map it with --video-map


def test_errors_name_file_line_track_and_frame(tmp_path):
    bad = (META
           + '  <track id="1" label="person">\n'
           + '    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="a" ytl="1" xbr="5" ybr="5"/>\n'
           + '    <box frame="1" outside="0" occluded="0" keyframe="1" xtl="1" ytl="1" xbr="5" ybr="5"/>\n'
           + '    <box frame="1" outside="0" occluded="0" keyframe="1" xtl="1" ytl="1" xbr="6" ybr="5"/>\n'
           + '    <box frame="2" outside="2" occluded="0" keyframe="1" xtl="1" ytl="1" xbr="6" ybr="5"/>\n'
           + "  </track>\n"
           + '  <track id="1" label="person"></track>\n'
           + "</annotations>\n")
    path = write(tmp_path, bad)
    with pytest.raises(ConversionError) as info:
        read_cvat_video_xml(path)
    n = META.count("\n")
    errors = info.value.errors
    assert len(errors) == 4
    assert errors[0].startswith(f"{path}:{n + 2}: track 1") and "xtl" in errors[0]
    assert errors[1].startswith(f"{path}:{n + 4}: track 1, frame 1") and f"line {n + 3}" in errors[1]
    assert errors[2].startswith(f"{path}:{n + 5}: track 1, frame 2")
    assert errors[3].startswith(f"{path}:{n + 7}: track 1 is defined twice")


def test_malformed_xml_and_other_exports(tmp_path):
    with pytest.raises(ConversionError, match=r"task.xml:3: not well-formed"):
        read_cvat_video_xml(write(tmp_path, "<annotations>\n<track>\n</annotations>\n"))
    with pytest.raises(ConversionError, match="CVAT for images"):
        read_cvat_video_xml(write(tmp_path, '<annotations><image id="0" name="a.jpg"/></annotations>'))
    with pytest.raises(ConversionError, match="project export"):
        read_cvat_video_xml(write(tmp_path, "<annotations><meta><project/></meta></annotations>"))
    with pytest.raises(ConversionError, match="expected <annotations>"):
        read_cvat_video_xml(write(tmp_path, "<tracks/>"))
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE a [\n<!ENTITY x "xxxxxxxx">\n]>\n<annotations>&x;</annotations>\n'
    with pytest.raises(ConversionError, match="entity declarations are not accepted"):
        read_cvat_video_xml(write(tmp_path, bomb))
    with pytest.raises(ConversionError, match="cannot read"):
        read_cvat_video_xml(tmp_path / "missing.xml")
