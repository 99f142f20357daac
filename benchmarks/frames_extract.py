"""Frame extraction throughput of `data_prep.ava.frames.extract_frames` against the plain ffmpeg command.

Both sides run the same pinned ffmpeg binary on the same videos with the same output options
(PySlowFast's `-r 30 -q:v 1`, JPEG per frame) and the same parallelism (`--jobs` videos at a time). The
plain side is the shell recipe run from a thread pool; `extract_frames` adds probing, the temporary
folder, the count check and the rename. Prints frames/s of each (best and median of `--repeat` runs,
interleaved, which side goes first alternating), frames per CPU-second (this process and its ffmpeg
children: the figure that other load on the machine disturbs least) and the ratios; the goal is >= 0.9x.
With `--cut`, also `cut_videos` against the plain `ffmpeg -ss S -t T -i in out` (seconds of video cut per
second of wall time), one run each.

Videos: `--videos DIR` (any files ffmpeg reads), or generated once into a temporary folder: `--count`
H.264 videos of `--seconds` at `--width`x`--height`, 30 fps (a moving texture, so JPEGs are not trivial).

Usage: python benchmarks/frames_extract.py [--count 4 --seconds 20 --width 1280 --height 720] [--jobs 2]
       [--repeat 3] [--cut] [--videos DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import drifting_texture_video  # noqa: E402
from data_prep.ava.cut import cut_videos  # noqa: E402
from data_prep.ava.ffmpeg import ffmpeg_executable, ffmpeg_version, find_videos, format_seconds  # noqa: E402
from data_prep.ava.frames import extract_frames  # noqa: E402


def run_pool(jobs: int, commands: list[list[str]]) -> None:
    """Run the commands ``jobs`` at a time, the way a thread pool (or ``xargs -P``) would."""
    def one(cmd: list[str]) -> None:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, commands))


def plain_frames(exe: str, videos: dict[str, Path], out: Path, jobs: int, fps: float) -> int:
    """PySlowFast's recipe, ``ffmpeg -i <video> -r 30 -q:v 1 <out>/<vid>/<vid>_%06d.jpg``, per video."""
    commands = []
    for vid, path in videos.items():
        (out / vid).mkdir(parents=True)
        commands.append([exe, "-i", str(path.absolute()), "-r", format_seconds(fps), "-q:v", "1",
                         str((out / vid).absolute() / f"{vid}_%06d.jpg")])
    run_pool(jobs, commands)
    return sum(len(os.listdir(out / vid)) for vid in videos)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the ffmpeg processes)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process and children, fn's result)."""
    began, cpu = time.perf_counter(), cpu_seconds()
    count = fn()
    return time.perf_counter() - began, cpu_seconds() - cpu, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, help="a folder of videos to use instead of generated ones")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=30.0, help="output frames per second (-r)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cut", action="store_true", help="also time cut_videos against plain ffmpeg")
    args = parser.parse_args()

    exe = ffmpeg_executable()
    print(f"ffmpeg {ffmpeg_version(exe)} ({exe}); {os.cpu_count()} CPUs, jobs={args.jobs}")
    with tempfile.TemporaryDirectory(prefix="frames_bench_") as tmp:
        tmp_dir = Path(tmp)
        root = tmp_dir / "ds"
        clips = root / "videos_15min"
        clips.mkdir(parents=True)
        if args.videos:
            sources, failed = find_videos(args.videos)
            if failed or not sources:
                print(f"{args.videos}: no usable videos ({failed})", file=sys.stderr)
                return 1
            for path in sources.values():
                os.symlink(path.absolute(), clips / path.name)
        else:
            began = time.perf_counter()
            for i in range(args.count):
                drifting_texture_video(clips / f"bench{i}.mp4", args.width, args.height, args.seconds, seed=i)
            print(f"generated {args.count} x {args.seconds:g} s {args.width}x{args.height} 30 fps H.264 "
                  f"in {time.perf_counter() - began:.1f} s")
        videos, _ = find_videos(clips)

        def ours() -> int:
            shutil.rmtree(root / "frames", ignore_errors=True)
            report = extract_frames(root, fps=args.fps, jobs=args.jobs)
            if not report.ok:
                raise RuntimeError(report.summary())
            return sum(report.details["frames"].values())

        def plain() -> int:
            shutil.rmtree(tmp_dir / "plain", ignore_errors=True)
            return plain_frames(exe, videos, tmp_dir / "plain", args.jobs, args.fps)

        walls: dict[str, list[float]] = {"plain ffmpeg": [], "extract_frames": []}
        cpus: dict[str, list[float]] = {"plain ffmpeg": [], "extract_frames": []}
        frames = {}
        sides = [("plain ffmpeg", plain), ("extract_frames", ours)]
        for r in range(args.repeat):  # interleaved, first side alternating: load elsewhere hits both alike
            for name, fn in sides if r % 2 == 0 else sides[::-1]:
                wall, cpu, frames[name] = timed(fn)
                walls[name].append(wall)
                cpus[name].append(cpu)
        if frames["plain ffmpeg"] != frames["extract_frames"]:
            print(f"frame counts differ: {frames}", file=sys.stderr)
        print(f"\nframes: {len(videos)} videos, {frames['extract_frames']} frames per run, {args.repeat} runs each")
        print(f"{'':16} {'best s':>8} {'median s':>9} {'best fr/s':>10} {'median fr/s':>12} "
              f"{'median CPU s':>13} {'fr/CPU-s':>9}")
        rates = {}
        for name, values in walls.items():
            best, median, cpu = min(values), statistics.median(values), statistics.median(cpus[name])
            rates[name] = (frames[name] / best, frames[name] / median, frames[name] / cpu)
            print(f"{name:16} {best:8.2f} {median:9.2f} {rates[name][0]:10.1f} {rates[name][1]:12.1f} "
                  f"{cpu:13.2f} {rates[name][2]:9.1f}")
        ratio = [a / b for a, b in zip(rates["extract_frames"], rates["plain ffmpeg"], strict=True)]
        print(f"ratio extract_frames / plain: {ratio[0]:.3f} (best wall), {ratio[1]:.3f} (median wall), "
              f"{ratio[2]:.3f} (CPU time); goal >= 0.9")

        if args.cut:
            shutil.rmtree(root / "frames", ignore_errors=True)
            os.rename(clips, root / "videos")
            length = min(10.0, args.seconds - 2.0)
            start, end = 1.0, 1.0 + length - 1.0  # end inclusive: -t = end - start + 1 = length
            plain_out = tmp_dir / "plain_cut"
            plain_out.mkdir()
            seconds_plain, _, _ = timed(lambda: run_pool(args.jobs, [
                [exe, "-ss", format_seconds(start), "-t", format_seconds(length), "-i", str(p.absolute()),
                 str((plain_out / p.name).absolute())] for p in videos_in(root / "videos")]) or 0)
            seconds_ours, _, _ = timed(lambda: len(cut_videos(root, start, end, jobs=args.jobs).done))
            total = length * len(videos)
            print(f"\ncut: {len(videos)} videos x {length:g} s re-encoded (ffmpeg's default libx264 settings)")
            print(f"plain ffmpeg     {seconds_plain:8.2f} s  {total / seconds_plain:6.2f} video-s/s")
            print(f"cut_videos       {seconds_ours:8.2f} s  {total / seconds_ours:6.2f} video-s/s")
            print(f"ratio cut_videos / plain: {seconds_plain / seconds_ours:.3f}")
    return 0


def videos_in(folder: Path) -> list[Path]:
    return list(find_videos(folder)[0].values())


if __name__ == "__main__":
    sys.exit(main())
