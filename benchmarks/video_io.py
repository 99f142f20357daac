"""Streaming decode throughput and memory of `detection.video.FrameStream`, against a bare PyAV loop.

Writes a textured, moving test video (H.264) and prints:
- frames/s of a bare PyAV decode loop (`to_ndarray("rgb24")` per frame) and of FrameStream, at full size
  and with the decoder resizing to a 256-pixel short side (what a model's input pipeline asks for);
- peak RSS of a process that streams a short and a 6x longer video: streaming keeps it flat.

Usage: python benchmarks/video_io.py [--width 1280 --height 720 --seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import drifting_texture_video  # noqa: E402
from detection.video import FrameStream  # noqa: E402


def bare_pyav(path: Path) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def frame_stream(path: Path, size: int | None) -> int:
    with FrameStream(path, size=size) as stream:
        return sum(1 for _ in stream)


def timed(fn, *args, repeat: int = 3) -> tuple[int, float]:
    """Frames decoded and the best wall time of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        n = fn(*args)
        best = min(best, time.perf_counter() - start)
    return n, best


def peak_rss_mib(path: Path) -> float:
    """Peak RSS of a fresh process that streams ``path`` at full size and drops every frame."""
    code = (
        "import resource, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from detection.video import FrameStream\n"
        f"with FrameStream({str(path)!r}) as s:\n"
        "    for f in s: pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        short, long = Path(tmp) / "short.mp4", Path(tmp) / "long.mp4"
        drifting_texture_video(short, args.width, args.height, args.seconds, cell=8, drift=4, block=40)
        drifting_texture_video(long, args.width, args.height, 6 * args.seconds, cell=8, drift=4, block=40)
        print(f"video: {args.width}x{args.height}, 30 fps, {args.seconds:g} s (H.264)")
        bare_pyav(short)  # warm the page cache and the codec
        for name, fn, extra in [
            ("bare PyAV loop, full size", bare_pyav, ()),
            ("FrameStream, full size", frame_stream, (None,)),
            ("FrameStream, short side 256", frame_stream, (256,)),
        ]:
            n, seconds = timed(fn, short, *extra)
            print(f"  {name:<30} {n / seconds:8.1f} frames/s ({n} frames, best of 3: {seconds:.2f} s)")
        rss_short, rss_long = peak_rss_mib(short), peak_rss_mib(long)
        print(
            f"peak RSS streaming {args.seconds:g} s: {rss_short:.0f} MiB, {6 * args.seconds:g} s: {rss_long:.0f} MiB "
            f"(ratio {rss_long / rss_short:.2f})"
        )


if __name__ == "__main__":
    main()
