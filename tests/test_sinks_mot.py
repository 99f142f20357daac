import numpy as np

from detection.sinks.mot import MotSink
from detection.tubes.io import read_mot_txt
from detection.tubes.linker import TrackPiece


def test_pieces_become_pixel_lines(tmp_path):
    piece = TrackPiece("v", 4, np.arange(3), np.tile([[0.1, 0.2, 0.3, 0.6]], (3, 1)).astype(np.float32),
                       np.full(3, 0.9, np.float32))
    with MotSink(tmp_path / "t.txt", 100, 50) as sink:
        sink.write([piece])
    assert sink.track_ids == {4} and sink.lines == 3
    assert (tmp_path / "t.txt").read_text().splitlines()[0] == "1,4,10.00,10.00,20.00,20.00,0.9000,-1,-1,-1"
    mot = read_mot_txt(tmp_path / "t.txt", 100, 50)
    np.testing.assert_allclose(mot.boxes[0], [0.1, 0.2, 0.3, 0.6], atol=1e-6)
