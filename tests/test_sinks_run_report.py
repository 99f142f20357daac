from detection.sinks.run_report import read_run_report, software_versions, write_run_report


def test_round_trip_and_versions(tmp_path):
    write_run_report(tmp_path / "run.json", {"video_id": "v", "counts": {"frames": 3}})
    report = read_run_report(tmp_path / "run.json")
    assert report["counts"] == {"frames": 3} and report["versions"]["torch"]
    assert "python" in software_versions()
    (tmp_path / "bad.json").write_text("{")
    assert read_run_report(tmp_path / "bad.json") is None and read_run_report(tmp_path / "none.json") is None
