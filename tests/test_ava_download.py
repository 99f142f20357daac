"""AVA download: parallel, resumable, verified fetching of videos and the annotation zip, against a local server."""

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from http_server import closed_port_url, serve_directory

from data_prep.ava.download import (
    RECORD_NAME,
    DownloadError,
    download_annotations,
    download_videos,
    read_video_list,
)

ROOT = Path(__file__).resolve().parent.parent
FAST = {"backoff_s": 0.01, "timeout_s": 5.0}


def make_site(tmp_path: Path, sizes: dict[str, int]) -> tuple[Path, Path]:
    """A served folder with one file of random bytes per name, and a local list of the names."""
    site = tmp_path / "site"
    site.mkdir()
    for name, size in sizes.items():
        (site / name).write_bytes(os.urandom(size))
    listing = tmp_path / "list.txt"
    listing.write_text("# AVA-like list\n" + "".join(f"{name}\n" for name in sizes) + "\n")
    return site, listing


def video(root: Path, name: str) -> Path:
    return root / "videos" / name


def assert_same(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), f"{a} differs from {b}"


SIZES = {"-5KQ66BBWC4.mkv": 70_000, "053oq2xB3oU.mkv": 3_000, "0f39OWEqJ24.mp4": 131_072}


def test_download_all_then_rerun_skips_without_get(tmp_path):
    site, listing = make_site(tmp_path, SIZES)
    root = tmp_path / "ava"
    with serve_directory(site) as server:
        report = download_videos(root, listing, server.url, jobs=2, **FAST)
        assert report.step == "download" and report.ok, report.summary()
        assert report.done == list(SIZES) and report.skipped == []
        for name, size in SIZES.items():
            assert_same(video(root, name), site / name)
            assert report.details["sizes"][name] == size
        assert report.details["bytes_downloaded"] == sum(SIZES.values())
        assert report.details["base_url"] == server.url and report.details["list"] == str(listing)
        assert not list((root / "videos").glob("*.part"))
        gets = server.count("GET")

        again = download_videos(root, listing, server.url, jobs=2, **FAST)
        assert again.ok and again.done == [] and again.skipped == list(SIZES)
        assert server.count("GET") == gets  # complete files are recognised from HEAD alone
        assert again.details["bytes_downloaded"] == 0


def test_without_head_the_recorded_size_decides(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 5_000, "b.mkv": 6_000})
    root = tmp_path / "ava"
    with serve_directory(site, no_head=True) as server:
        assert download_videos(root, listing, server.url, **FAST).done == ["a.mkv", "b.mkv"]
        assert (root / "videos" / RECORD_NAME).is_file()
        with open(video(root, "b.mkv"), "r+b") as f:  # damaged after it was verified
            f.truncate(100)
        gets = server.count("GET")
        again = download_videos(root, listing, server.url, **FAST)
        assert again.skipped == ["a.mkv"] and again.done == ["b.mkv"]
        assert server.count("GET") == gets + 1
        assert_same(video(root, "b.mkv"), site / "b.mkv")


def test_offline_rerun_of_a_complete_folder_skips_by_record(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 2_000})
    root = tmp_path / "ava"
    with serve_directory(site) as server:
        assert download_videos(root, listing, server.url, **FAST).ok
    again = download_videos(root, listing, closed_port_url(), **FAST)
    assert again.ok and again.skipped == ["a.mkv"]


def test_wrong_size_final_file_is_fetched_again(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 4_000})
    root = tmp_path / "ava"
    video(root, "a.mkv").parent.mkdir(parents=True)
    video(root, "a.mkv").write_bytes(b"x" * 10)
    with serve_directory(site) as server:
        report = download_videos(root, listing, server.url, **FAST)
    assert report.done == ["a.mkv"]
    assert_same(video(root, "a.mkv"), site / "a.mkv")


def test_cut_connection_is_resumed_with_range(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 50_000, "b.mkv": 20_000})
    root = tmp_path / "ava"
    with serve_directory(site, drop_after={"a.mkv": 12_345}, drop_times=1) as server:
        report = download_videos(root, listing, server.url, **FAST)
        assert report.ok, report.summary()
        assert server.ranges("a.mkv") == [None, "bytes=12345-"]
        assert server.ranges("b.mkv") == [None]
    assert report.details["resumed"] == {"a.mkv": 12_345}
    assert report.details["bytes_downloaded"] == 70_000  # nothing fetched twice
    assert_same(video(root, "a.mkv"), site / "a.mkv")
    assert_same(video(root, "b.mkv"), site / "b.mkv")


def test_size_mismatch_fails_and_the_next_run_resumes(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 2_048, "b.mkv": 1_000})
    root = tmp_path / "ava"
    with serve_directory(site, drop_after={"a.mkv": 1_000}) as server:
        report = download_videos(root, listing, server.url, retries=0, **FAST)
        assert report.done == ["b.mkv"]
        assert report.failed["a.mkv"].startswith("size 1000 != 2048"), report.failed
        assert not video(root, "a.mkv").exists()  # never a partial file under the final name
        assert video(root, "a.mkv.part").stat().st_size == 1_000

        server.faults.drop_after = None
        again = download_videos(root, listing, server.url, retries=0, **FAST)
        assert again.ok and again.done == ["a.mkv"] and again.skipped == ["b.mkv"]
        assert server.ranges("a.mkv")[-1] == "bytes=1000-"
    assert_same(video(root, "a.mkv"), site / "a.mkv")
    assert not video(root, "a.mkv.part").exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 30_000})
    root = tmp_path / "ava"
    part = video(root, "a.mkv.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage" * 100)  # not the file's first bytes: appending to it would corrupt the file
    with serve_directory(site, ignore_range=True) as server:
        report = download_videos(root, listing, server.url, **FAST)
        assert server.ranges("a.mkv") == ["bytes=700-"]
    assert report.ok and report.details["restarted"] == ["a.mkv"]
    assert_same(video(root, "a.mkv"), site / "a.mkv")


def test_complete_part_is_renamed_after_416(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 3_000})
    root = tmp_path / "ava"
    part = video(root, "a.mkv.part")
    part.parent.mkdir(parents=True)
    part.write_bytes((site / "a.mkv").read_bytes())  # stopped between the last byte and the rename
    with serve_directory(site) as server:
        report = download_videos(root, listing, server.url, **FAST)
    assert report.done == ["a.mkv"] and report.details["bytes_downloaded"] == 0
    assert_same(video(root, "a.mkv"), site / "a.mkv")


def test_http_errors_are_reported_and_the_others_downloaded(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 1_000, "b.mkv": 1_000, "c.mkv": 1_000})
    root = tmp_path / "ava"
    with serve_directory(site, status={"b.mkv": 404, "c.mkv": 500}) as server:
        report = download_videos(root, listing, server.url, retries=2, **FAST)
        assert server.count("GET", "b.mkv") == 1  # a 404 is final
        assert server.count("GET", "c.mkv") == 3  # a 500 is retried
    assert report.done == ["a.mkv"]
    assert report.failed["b.mkv"].startswith("HTTP 404")
    assert report.failed["c.mkv"].startswith("HTTP 500")
    assert not video(root, "b.mkv").exists() and not video(root, "c.mkv").exists()
    assert "failed b.mkv: HTTP 404" in report.summary()


def test_stalled_transfer_times_out_quickly_with_a_clear_reason(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 5_000, "b.mkv": 5_000})
    root = tmp_path / "ava"
    with serve_directory(site, stall_s={"a.mkv": 1.0}, stall_after=100) as server:
        started = time.monotonic()
        report = download_videos(root, listing, server.url, retries=0, timeout_s=0.2, backoff_s=0.01)
        elapsed = time.monotonic() - started
    assert elapsed < 0.9, elapsed
    assert report.done == ["b.mkv"]
    assert report.failed["a.mkv"].startswith("timed out after 0.2 s"), report.failed
    assert not video(root, "a.mkv").exists()


def test_unreachable_server_fails_fast_and_names_the_cause(tmp_path):
    _, listing = make_site(tmp_path, {f"v{i}.mkv": 10 for i in range(8)})
    started = time.monotonic()
    report = download_videos(tmp_path / "ava", listing, closed_port_url(), jobs=2, retries=2, backoff_s=0.05)
    assert time.monotonic() - started < 3
    assert len(report.failed) == 8 and not report.done
    reasons = set(report.failed.values())
    assert any(r.startswith("cannot connect to 127.0.0.1:") and "refused" in r for r in reasons), reasons
    assert sum(r.startswith("not attempted: cannot connect") for r in reasons) >= 1


def test_unreachable_list_url_is_one_clear_failure(tmp_path):
    report = download_videos(tmp_path / "ava", closed_port_url() + "list.txt", closed_port_url(), **FAST)
    assert list(report.failed) == ["list.txt"]
    assert "cannot read the video list" in report.failed["list.txt"]
    assert "cannot connect" in report.failed["list.txt"]


def test_names_select_entries_of_the_list(tmp_path):
    site, listing = make_site(tmp_path, {"-5KQ66BBWC4.mkv": 500, "b.mp4": 600, "c.mkv": 700})
    root = tmp_path / "ava"
    with serve_directory(site) as server:
        report = download_videos(root, listing, server.url, names=["-5KQ66BBWC4", "c.mkv", "nope"], **FAST)
    assert report.done == ["-5KQ66BBWC4.mkv", "c.mkv"]
    assert report.failed == {"nope": f"not in the video list {listing}"}
    assert not video(root, "b.mp4").exists()


def test_read_video_list_from_file_and_url(tmp_path):
    listing = tmp_path / "names.txt"
    listing.write_bytes(b"\xef\xbb\xbf# comment\r\n-5KQ66BBWC4.mkv\r\n\r\n  0f39OWEqJ24.mp4  \n-5KQ66BBWC4.mkv\n")
    expected = ["-5KQ66BBWC4.mkv", "0f39OWEqJ24.mp4"]
    assert read_video_list(listing) == expected
    with serve_directory(tmp_path) as server:
        assert read_video_list(server.url + "names.txt") == expected
        with pytest.raises(DownloadError, match=r"names2\.txt: HTTP 404"):
            read_video_list(server.url + "names2.txt")


@pytest.mark.parametrize("bad", ["../etc/passwd", "sub/a.mkv", ".hidden.mkv", "two words.mkv", "a\x00b.mkv", "..",
                                 "a\\b.mkv"])
def test_read_video_list_rejects_unsafe_names_with_their_line(tmp_path, bad):
    listing = tmp_path / "names.txt"
    listing.write_text(f"ok.mkv\n\n{bad}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"names\.txt:3: file name"):
        read_video_list(listing)
    with serve_directory(tmp_path) as server:
        with pytest.raises(ValueError, match=r"/names\.txt:3: file name"):
            read_video_list(server.url + "names.txt")
        report = download_videos(tmp_path / "ava", server.url + "names.txt", server.url, **FAST)
    assert list(report.failed) == ["names.txt"] and ":3: file name" in report.failed["names.txt"]
    assert not (tmp_path / "ava" / "videos").exists()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="jobs"):
        download_videos("unused", "unused.txt", jobs=0)
    with pytest.raises(ValueError, match="timeout_s"):
        download_annotations("unused", timeout_s=0)


def test_progress_bar_runs(tmp_path, capsys):
    site, listing = make_site(tmp_path, {"a.mkv": 1_000})
    with serve_directory(site) as server:
        assert download_videos(tmp_path / "ava", listing, server.url, progress=True, **FAST).ok
        zip_path = site / "ann.zip"
        with zipfile.ZipFile(zip_path, "w") as zf:
            zf.writestr("x.csv", "a,b\n")
        assert download_annotations(tmp_path / "ava", server.url + "ann.zip", progress=True, **FAST).ok


# -------------------------------------------------------------------------------------------------- annotations


def make_zip(path: Path, members: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buffer.getvalue())


MEMBERS = {
    "ava_v2.2/ava_train_v2.2.csv": b"-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n" * 50,
    "ava_v2.2/ava_val_excluded_timestamps_v2.2.csv": b"1j20qq1JyX4,0902\n",
    "ava_v2.2/ava_action_list_v2.2.pbtxt": b'label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n}\n',
    "ava_v2.2/ava_included_timestamps_v2.2.txt": b"0902\n0903\n",
    "ava_v2.2/": b"",
    "ava_v2.2/notes.md": b"not an annotation file\n",
    "__MACOSX/ava_v2.2/._ava_train_v2.2.csv": b"\x00\x05",
    "../../escape.csv": b"flattened into annotations/\n",
    "other/ava_val_excluded_timestamps_v2.2.csv": b"repeated name\n",
}


def test_annotations_zip_is_fetched_and_extracted_flat(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_zip(site / "ava_v2.2.zip", MEMBERS)
    root = tmp_path / "data" / "ava"
    with serve_directory(site) as server:
        report = download_annotations(root, server.url + "ava_v2.2.zip", **FAST)
        assert report.step == "download-annotations"
        assert sorted(report.done) == sorted([
            "ava_train_v2.2.csv", "ava_val_excluded_timestamps_v2.2.csv", "ava_action_list_v2.2.pbtxt",
            "ava_included_timestamps_v2.2.txt", "escape.csv",
        ])
        assert list(report.failed) == ["other/ava_val_excluded_timestamps_v2.2.csv"]
        assert sorted(report.details["ignored"]) == ["__MACOSX/ava_v2.2/._ava_train_v2.2.csv", "ava_v2.2/notes.md"]
        assert report.details["zip_downloaded"] is True
        folder = root / "annotations"
        for member in ("ava_v2.2/ava_train_v2.2.csv", "ava_v2.2/ava_action_list_v2.2.pbtxt", "../../escape.csv"):
            assert (folder / Path(member).name).read_bytes() == MEMBERS[member]
        assert (folder / "ava_val_excluded_timestamps_v2.2.csv").read_bytes() == b"1j20qq1JyX4,0902\n"
        written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
        assert not [p for p in written if not p.startswith(("site/", "data/ava/annotations/"))], written
        assert not [p for p in written if p.endswith((".tmp", ".part"))]

        (folder / "ava_train_v2.2.csv").write_bytes(b"edited\n")
        gets = server.count("GET")
        again = download_annotations(root, server.url + "ava_v2.2.zip", **FAST)
        assert server.count("GET") == gets  # the zip is complete: not fetched again
        assert again.details["zip_downloaded"] is False
        assert again.done == ["ava_train_v2.2.csv"] and len(again.skipped) == 4
    assert (folder / "ava_train_v2.2.csv").read_bytes() == MEMBERS["ava_v2.2/ava_train_v2.2.csv"]


def test_annotations_from_a_local_zip(tmp_path):
    make_zip(tmp_path / "ann.zip", {"a/x.csv": b"1\n"})
    report = download_annotations(tmp_path / "ava", str(tmp_path / "ann.zip"))
    assert report.ok and report.done == ["x.csv"]
    assert (tmp_path / "ava" / "annotations" / "x.csv").read_bytes() == b"1\n"


def test_corrupt_annotations_zip_is_reported_and_removed(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ava_v2.2.zip").write_bytes(b"this is not a zip archive" * 10)
    root = tmp_path / "ava"
    with serve_directory(site) as server:
        report = download_annotations(root, server.url + "ava_v2.2.zip", **FAST)
        assert "not a valid zip file" in report.failed["ava_v2.2.zip"]
        assert not (root / "annotations" / "ava_v2.2.zip").exists()

        missing = download_annotations(root, server.url + "ava_v9.zip", retries=0, **FAST)
    assert missing.failed == {"ava_v9.zip": "HTTP 404 Not Found"}


# ------------------------------------------------------------------------------------------------- interruption


KILLED_CHILD = """
import sys
from data_prep.ava.download import download_videos
download_videos(sys.argv[1], sys.argv[2], sys.argv[3], retries=0, timeout_s=30)
"""


def test_killed_download_leaves_no_final_file_and_resumes(tmp_path):
    site, listing = make_site(tmp_path, {"a.mkv": 40_000})
    root = tmp_path / "ava"
    part = video(root, "a.mkv.part")
    with serve_directory(site, stall_s=3.0, stall_after=10_000) as server:
        child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(root), str(listing), server.url],
                                 cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            deadline = time.monotonic() + 15
            while not (part.is_file() and part.stat().st_size >= 10_000):
                assert child.poll() is None and time.monotonic() < deadline, "the child never wrote its part file"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=10)
        assert not video(root, "a.mkv").exists()
        assert part.stat().st_size == 10_000

        server.faults.stall_s = 0.0
        report = download_videos(root, listing, server.url, **FAST)
        assert report.ok and report.details["resumed"] == {"a.mkv": 10_000}
        assert server.ranges("a.mkv")[-1] == "bytes=10000-"
    assert_same(video(root, "a.mkv"), site / "a.mkv")


# --------------------------------------------------------------------------------------------------- the server


def test_server_answers_head_and_ranges(tmp_path):
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4)
    with serve_directory(tmp_path) as server:
        with urlopen(Request(server.url + "f.bin", method="HEAD"), timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Length"] == "1024"
        with urlopen(Request(server.url + "f.bin", headers={"Range": "bytes=1000-"}), timeout=5) as r:
            assert r.status == 206 and r.headers["Content-Range"] == "bytes 1000-1023/1024"
            assert r.read() == (bytes(range(256)) * 4)[1000:]
        with pytest.raises(HTTPError) as err:
            urlopen(Request(server.url + "f.bin", headers={"Range": "bytes=1024-"}), timeout=5)
        assert err.value.code == 416 and err.value.headers["Content-Range"] == "bytes */1024"
        with pytest.raises(HTTPError, match="404"):
            urlopen(server.url + "../etc/passwd", timeout=5)
        assert server.count() == 4 and server.count("HEAD") == 1
