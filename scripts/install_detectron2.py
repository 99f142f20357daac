#!/usr/bin/env python3
"""Install Detectron2 0.5 (Python code only) into this interpreter, from the ``detectron2-cdo`` sdist on PyPI.

Detectron2 is not published on PyPI. ``detectron2-cdo`` 0.5 is Detectron2 0.5's Python code, but as
published it neither builds nor runs here: its setup.py compiles C++/CUDA sources that the sdist does
not contain and installs no model-zoo configs (it globs a ``configs/`` folder the sdist does not have),
it declares a direct-URL extra that pip rejects for anything from PyPI, and its code uses APIs that
newer libraries removed (``pkg_resources``, ``PIL.Image.LINEAR``, ``np.bool``/``np.int``/...).

This script, which is ours:

1. finds the pinned sdist on the package index (PEP 691 JSON or PEP 503 HTML simple page; the index
   is pip's, ``PIP_INDEX_URL`` or https://pypi.org/simple), downloads it and checks its sha256 against
   the pin below (``--sdist FILE`` uses a local copy instead: offline machines). ``pip download`` cannot
   fetch it: pip builds the metadata of a downloaded sdist and then refuses it for the direct-URL extra;
2. unpacks it into a cache folder and applies the patches listed in ``PATCHES`` (each one must match
   exactly, so a changed file fails loudly instead of half-patching);
3. writes a small setup.py of ours (pure Python, model-zoo configs as package data, no dependencies
   declared) and installs it with ``pip install --no-deps --no-build-isolation``, after the pinned
   pure-Python dependencies in ``DEPENDENCIES``;
4. checks that ``from detectron2 import model_zoo; from detectron2.engine import DefaultPredictor``
   works and that the model zoo resolves ``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml``.

Without ``detectron2._C`` the standard detectors run (Faster R-CNN and Keypoint R-CNN are tested here):
Detectron2 0.5 takes RoIAlign and NMS from torchvision.ops. What needs the C++ ops (rotated boxes,
deformable convolution, the fast COCO evaluator) raises a clear error when called.

Idempotent: when the installed distribution already carries this recipe's version
(``INSTALLED_VERSION``), it prints one line and exits in well under a second; ``--force`` reinstalls.
``--optional`` (used by ``make test``) turns a failure into a warning line and exit status 0, so that
a registry hiccup never fails a build; the Detectron2 tests then skip.

Usage: python scripts/install_detectron2.py [--force] [--optional] [--verbose] [--sdist FILE] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = "detectron2-cdo"
VERSION = "0.5"
FILENAME = "detectron2_cdo-0.5.tar.gz"
SHA256 = "53c9e79e9cc943e80419c588ea44b5479507a8628ed14a4e06bd093e29311b18"
RECIPE = 1  # bump when the patches or the setup.py below change: the next run reinstalls
INSTALLED_VERSION = f"{VERSION}+actdet.{RECIPE}"
DEFAULT_INDEX = "https://pypi.org/simple"

# Pure-Python runtime dependencies of the parts we use (config, model zoo, modeling, engine), pinned.
# Left out on purpose: tensorboard (training logs), hydra-core and black (LazyConfig overrides and
# saving, imported lazily), pydot/future (caffe2 export), shapely/panopticapi (the "all" extra).
DEPENDENCIES = [
    "fvcore==0.1.5.post20221221",
    "iopath==0.1.10",
    "yacs==0.1.8",
    "tabulate==0.10.0",
    "termcolor==3.3.0",
    "cloudpickle==3.1.2",
    "omegaconf==2.4.0",
]

BUILD_BACKEND = "setuptools==84.2.1"  # installed only when the environment's setuptools is older than 70.1

CHECK = """
import detectron2
from detectron2 import model_zoo
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml")
print(detectron2.__file__, path, sep="\\n")
"""

_OPTIONAL_C = '''\
"""Added by actdet's scripts/install_detectron2.py: this Detectron2 is installed without its C++/CUDA ops.

The standard detectors do not need them (RoIAlign and NMS come from torchvision.ops). Code that does
(rotated boxes, deformable convolution, the fast COCO evaluator) gets a clear error when it calls one.
"""

try:
    from detectron2 import _C  # noqa: F401  (a build that has the extension keeps using it)
except ImportError:

    class _MissingOps:
        def __getattr__(self, name):
            raise RuntimeError(
                f"detectron2._C.{name} is not available: this Detectron2 was installed by actdet's "
                "scripts/install_detectron2.py without its C++/CUDA ops (rotated boxes, deformable "
                "convolution and the fast COCO evaluator need them; the standard detectors do not)"
            )

    _C = _MissingOps()
'''

_SETUP_PY = f'''\
# Written by actdet's scripts/install_detectron2.py (replaces the sdist's setup.py, which compiles C++
# sources the sdist does not contain and installs no model-zoo configs).
from setuptools import find_packages, setup

setup(
    name="detectron2-cdo",
    version="{INSTALLED_VERSION}",
    description="Detectron2 0.5 (Python code only), patched for current torch/numpy/Pillow by actdet",
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    zip_safe=False,
)
'''

_C_IMPORT = ("from detectron2 import _C\n", "from detectron2._optional_c import _C\n")

# (file relative to the unpacked sdist, text to find, replacement, expected number of occurrences)
PATCHES: list[tuple[str, str, str, int]] = [
    # No C++ extension: import the ops lazily, erroring only when one is called.
    ("detectron2/layers/deform_conv.py", *_C_IMPORT, 1),
    ("detectron2/layers/roi_align_rotated.py", *_C_IMPORT, 1),
    ("detectron2/layers/rotated_boxes.py", *_C_IMPORT, 1),
    ("detectron2/evaluation/fast_eval_api.py", *_C_IMPORT, 1),
    # pkg_resources is gone from recent setuptools; the configs are package data next to model_zoo.py.
    ("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", "import importlib.resources\n", 1),
    (
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n'
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'cfg_file = str(importlib.resources.files("detectron2.model_zoo").joinpath("configs", config_path))',
        1,
    ),
    # Pillow 10 removed Image.LINEAR (it was an alias of BILINEAR).
    ("detectron2/data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR", 1),
    # torch warns on every forward pass without an explicit indexing; "ij" is what it always did.
    (
        "detectron2/modeling/anchor_generator.py",
        "torch.meshgrid(shifts_y, shifts_x)",
        'torch.meshgrid(shifts_y, shifts_x, indexing="ij")',
        1,
    ),
]
# numpy 1.24 removed the aliases np.bool, np.int, np.float, np.str, np.object: the builtins they named.
_NUMPY_ALIAS = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?![_\w])")


def log(message: str) -> None:
    print(f"install_detectron2: {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# 1. The sdist from the index


def _index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        try:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                capture_output=True, text=True, timeout=60,
            )
            url = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            url = ""
    return (url or DEFAULT_INDEX).rstrip("/")


def _open(url: str, accept: str | None = None, timeout: float = 60):
    cafile = os.environ.get("PIP_CERT")
    context = ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None)
    request = urllib.request.Request(url, headers={"User-Agent": "actdet-install-detectron2"})
    if accept:
        request.add_header("Accept", accept)
    return urllib.request.urlopen(request, timeout=timeout, context=context)


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def find_sdist_url(index: str) -> str:
    """The download URL of ``FILENAME`` from the index's simple page (PEP 691 JSON or PEP 503 HTML)."""
    page = f"{index}/{PROJECT}/"
    accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
    with _open(page, accept) as response:
        kind = response.headers.get("Content-Type", "")
        body = response.read()
        base = response.geturl()
    if "json" in kind:
        urls = [f["url"] for f in json.loads(body).get("files", [])]
    else:
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        urls = parser.hrefs
    for url in urls:
        full = urllib.parse.urljoin(base, url)
        if urllib.parse.urlsplit(full).path.rsplit("/", 1)[-1] == FILENAME:
            return full.split("#", 1)[0]
    raise RuntimeError(f"{page} lists no {FILENAME}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(cache: Path, local: Path | None) -> Path:
    """The verified sdist: ``local`` if given, else the cached copy, else a fresh download into the cache."""
    target = cache / FILENAME
    if local is not None:
        if _sha256(local) != SHA256:
            raise RuntimeError(f"{local}: sha256 {_sha256(local)} is not the pinned {SHA256} of {FILENAME}")
        return local
    if target.is_file() and _sha256(target) == SHA256:
        return target
    index = _index_url()
    last_error: Exception | None = None
    for attempt in range(3):
        try:
            url = find_sdist_url(index)
            log(f"downloading {url}")
            tmp = target.with_name(f".{FILENAME}.part")
            with _open(url) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            got = _sha256(tmp)
            if got != SHA256:
                tmp.unlink()
                raise RuntimeError(f"{url}: sha256 {got} is not the pinned {SHA256}")
            os.replace(tmp, target)
            return target
        except (OSError, urllib.error.URLError) as err:  # network: retry; a hash mismatch is final
            last_error = err
            time.sleep(2 * (attempt + 1))
    raise RuntimeError(
        f"cannot download {FILENAME} from {index}: {last_error}. On a machine without access to the index, "
        f"fetch the file elsewhere and run: {sys.executable} {__file__} --sdist PATH/{FILENAME}"
    )


# --------------------------------------------------------------------------------------------------
# 2-3. Unpack, patch, install


def unpack(sdist: Path, cache: Path) -> Path:
    """A fresh copy of the sdist's source tree under ``cache`` (any earlier copy is removed)."""
    build = cache / f"src-{INSTALLED_VERSION}"
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(build, filter="data")
    (root,) = [p for p in build.iterdir() if p.is_dir()]
    return root


def patch(root: Path) -> list[str]:
    """Apply ``PATCHES``, the numpy-alias rewrite, the optional-``_C`` module and our setup.py; returns a log."""
    done = []
    for rel, old, new, count in PATCHES:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        found = text.count(old)
        if found != count:
            raise RuntimeError(f"{rel}: expected {count} occurrence(s) of {old!r}, found {found}: the sdist changed?")
        path.write_text(text.replace(old, new), encoding="utf-8")
        done.append(f"{rel}: {old.strip().splitlines()[0]!r} -> {new.strip().splitlines()[0]!r}")
    aliases = 0
    for path in sorted((root / "detectron2").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new_text, n = _NUMPY_ALIAS.subn(r"\1", text)
        if n:
            path.write_text(new_text, encoding="utf-8")
            aliases += n
    done.append(f"np.bool/np.int/np.float/np.str/np.object -> builtins: {aliases} places")
    (root / "detectron2" / "_optional_c.py").write_text(_OPTIONAL_C, encoding="utf-8")
    done.append("detectron2/_optional_c.py: the C++ ops, imported only when present")
    (root / "setup.py").write_text(_SETUP_PY, encoding="utf-8")
    for stale in ("setup.cfg", "PKG-INFO", "detectron2_cdo.egg-info"):
        target = root / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    done.append("setup.py: ours (pure Python, model-zoo configs as package data, no declared dependencies)")
    return done


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")


def ensure_build_backend() -> None:
    """setuptools >= 70.1 builds wheels by itself (older ones need the ``wheel`` package): install it if older."""
    try:
        have = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("setuptools"))[:2])
    except importlib.metadata.PackageNotFoundError:
        have = (0, 0)
    if have < (70, 1):
        pip(BUILD_BACKEND)


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return None


def check() -> str:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"Detectron2 installed but does not import:\n{tail}")
    return result.stdout.strip()


def install(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    have = installed_version()
    if have == INSTALLED_VERSION and importlib.util.find_spec("detectron2") is not None and not args.force:
        log(f"Detectron2 {have} already installed in {sys.prefix} (--force reinstalls)")
        return
    try:  # a Detectron2 built from its own sources (distribution "detectron2") is left alone
        other = importlib.metadata.version("detectron2")
    except importlib.metadata.PackageNotFoundError:
        other = None
    if other is not None and not args.force:
        log(f"Detectron2 {other} (not installed by this script) is already in {sys.prefix}: left as it is")
        return
    cache = Path(args.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    sdist = fetch_sdist(cache, Path(args.sdist) if args.sdist else None)
    log(f"{sdist} (sha256 verified)")
    root = unpack(sdist, cache)
    done = patch(root)
    for line in done if args.verbose else ():
        log(f"patched {line}")
    log(f"patched: {len(done)} changes for current torch/numpy/Pillow/setuptools (--verbose lists them)")
    ensure_build_backend()
    pip(*DEPENDENCIES)
    pip("--no-deps", "--no-build-isolation", "--force-reinstall", str(root))
    shutil.rmtree(root.parent, ignore_errors=True)
    module, config = check().splitlines()[-2:]
    log(f"Detectron2 {INSTALLED_VERSION} installed in {time.perf_counter() - start:.1f} s: {module}")
    log(f"model zoo config resolves: {config}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall even when this recipe is installed")
    parser.add_argument("--optional", action="store_true", help="on failure print a warning and exit 0")
    parser.add_argument("--sdist", help=f"use this local {FILENAME} instead of downloading it")
    parser.add_argument("--verbose", action="store_true", help="list each patch applied")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actdet" / "detectron2"
    parser.add_argument("--cache-dir", default=str(default_cache), help="download and build folder")
    args = parser.parse_args(argv)
    try:
        install(args)
    except Exception as err:  # noqa: BLE001 (one clear line, whatever went wrong)
        if args.optional:
            log(f"WARNING: Detectron2 not installed ({err}); without it its tests skip. Retry: make detectron2")
            return 0
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
