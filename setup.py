"""Install the action detection pipeline: packages ``detection``, ``data_prep``, ``eval`` and ``actdet``."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = next(
    line.split('"')[1]
    for line in (ROOT / "detection" / "__init__.py").read_text().splitlines()
    if line.startswith("__version__")
)

# Exact pins: torch / torchvision builds must match each other (a mismatched pair fails with
# "operator torchvision::nms does not exist"), and pytorchvideo 0.1.5 is the last release.
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "pytorchvideo==0.1.5",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "opencv-python-headless==5.0.0.93",
    "pycocotools==2.0.11",
    "av==18.1.0",
    "imageio-ffmpeg==0.8.1",
    "pyyaml==6.0.3",
    "tqdm==4.70.1",
    "tensorboard==2.21.0",  # training metrics (detection.engine.logger; JSONL only without it)
    "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
    "dev": ["pytest==9.0.3", "ruff==0.17.6", "motmetrics==1.4.0"],
}

setup(
    name="actdet",
    version=VERSION,
    description="Spatio-temporal action detection: MViT + RoIAlign action heads, AVA evaluation, action tubes",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["detection", "detection.*", "data_prep", "data_prep.*", "eval", "eval.*"]),
    data_files=[
        (f"share/actdet/{path.parent.as_posix()}", [path.as_posix()])
        for path in sorted(Path("configs").rglob("*"))
        if path.is_file()
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["actdet=detection.cli:main"]},
)
