
from detection.formats.ava import read_ava_table
from detection.sinks.csv_sink import DetectionsCsvSink
from detection.structures import KeyframeDetections, LabelMap
from detection.tubes.io import read_detections_csv

LABELS = LabelMap.from_pairs([(12, "stand"), (14, "walk")])


def _kf(time_s, tids=None):
    return KeyframeDetections("v", int(time_s * 30), time_s, [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9]],
                              [0.9, 0.8], [[0.7, 0.01], [0.2, 0.6]], tids)


def test_with_track_ids_reads_back_through_the_detections_reader(tmp_path):
    with DetectionsCsvSink(tmp_path / "d.csv", LABELS, min_score=0.1) as sink:
        sink.write([_kf(0.5, [3, -1]), KeyframeDetections.empty("v", 30, 1.0, 2)])
    rows = read_detections_csv(tmp_path / "d.csv")
    assert sink.rows == len(rows) == 5  # 2 person rows + 3 actions above 0.1
    assert rows.action_ids.tolist() == [-1, 12, -1, 12, 14]
    assert rows.track_ids.tolist() == [3, 3, -1, -1, -1]
    assert (tmp_path / "d.csv").read_text().splitlines()[1] == "v,0.5,0.100,0.200,0.300,0.400,12,0.7000,3"


def test_ava_layout_has_8_columns_and_whole_seconds(tmp_path):
    with DetectionsCsvSink(tmp_path / "d.csv", LABELS, time_offset=900, track_ids=False) as sink:
        sink.write([_kf(2.0)])
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == "v,0902,0.100,0.200,0.300,0.400,12,0.7000" and len(lines) == 4
    assert all(len(line.split(",")) == 8 for line in lines)
    assert len(read_ava_table(tmp_path / "d.csv")) == 4
