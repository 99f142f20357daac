"""Kill an ffmpeg step between its ffmpeg finishing and its rename, for the resume tests of cut and frames.

Usage::

    kill_after_ffmpeg("from data_prep.ava.cut import cut_videos; cut_videos(...)", tmp_path, "the cut")
    # the step is dead, and so is its ffmpeg: check that only temporary outputs are left, then rerun it

The step runs in a child Python whose ``ACTDET_FFMPEG`` is a wrapper script: it runs the real ffmpeg,
writes its pid to a marker file, then sleeps. Once the marker is there the child gets SIGKILL, and the
test fails unless the wrapper (the step's own child) dies with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep.ava.ffmpeg import ENV_VAR, ffmpeg_executable

__all__ = ["kill_after_ffmpeg"]

REPO = Path(__file__).resolve().parents[1]

WRAPPER = """#!/bin/sh
# Run the real ffmpeg, then wait to be killed: a step killed after ffmpeg, before the rename.
for a in "$@"; do [ "$a" = "-version" ] && exec "{real}" "$@"; done
"{real}" "$@" || exit $?
echo $$ > "{marker}"
exec sleep 60
"""


def kill_after_ffmpeg(code: str, tmp_path: Path, what: str, timeout_s: float = 20.0) -> None:
    """Run the Python ``code`` in a child process and SIGKILL it once its first ffmpeg has finished.

    ``what`` names the step in failure messages ("the cut"). Fails the test when the step ends before it
    could be killed, when no ffmpeg finishes within ``timeout_s`` seconds, or when the ffmpeg side is still
    running 5 s after the kill.
    """
    marker = tmp_path / "ffmpeg-done"
    wrapper = tmp_path / "ffmpeg-then-wait"
    wrapper.write_text(WRAPPER.format(real=ffmpeg_executable(), marker=marker))
    wrapper.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, ENV_VAR: str(wrapper)})
    try:
        deadline = time.monotonic() + timeout_s
        while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, f"{what} ended before it could be killed"
            time.sleep(0.05)
        assert marker.exists(), "ffmpeg did not finish in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    pid = int(marker.read_text())
    for _ in range(100):  # the child dies with the step
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child of the killed step was still running")
