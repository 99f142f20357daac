import numpy as np

from detection.formats.tubes import VideoTubes, read_tubes_json, write_tubes_json
from detection.sinks.tubes import TubesJsonSink
from detection.structures import Tube


def _tube(label, start, n, track=1):
    boxes = np.tile(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), (n, 1))
    return Tube("v", label, track, np.arange(start, start + n), boxes, np.linspace(0.5, 0.9, n), 0.7)


def test_streamed_file_has_the_bytes_of_the_one_writer(tmp_path):
    header = VideoTubes("v", 30.0, 160, 120, {12: "stand", 14: "walk"})
    tubes = [_tube(12, 0, 3), _tube(14, 5, 4, track=2)]
    with TubesJsonSink(tmp_path / "a.json", header) as sink:
        sink.write(tubes[:1])
        sink.write(tubes[1:])
    write_tubes_json(tmp_path / "b.json", VideoTubes("v", 30.0, 160, 120, {12: "stand", 14: "walk"}, tubes))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert sink.counts == {12: 1, 14: 1}
    assert [t.label for t in read_tubes_json(tmp_path / "a.json")[0].tubes] == [12, 14]


def test_no_tubes_and_abort(tmp_path):
    header = VideoTubes("v", 30.0, 0, 0, {1: "x"})
    with TubesJsonSink(tmp_path / "a.json", header):
        pass
    assert read_tubes_json(tmp_path / "a.json")[0].tubes == []
    sink = TubesJsonSink(tmp_path / "c.json", header)
    sink.abort()
    assert list(tmp_path.iterdir()) == [tmp_path / "a.json"]
