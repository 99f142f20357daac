import argparse
import subprocess
import sys

import pytest

from detection import __version__
from detection.cli import build_parser, main


def _subparsers(parser, prefix=()):
    """Every (sub)command path of the parser, e.g. ('prep', 'synthetic')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subparsers(sub, (*prefix, name))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"actdet {__version__}"


def test_every_subcommand_has_help(capsys):
    paths = list(_subparsers(build_parser()))
    assert ("demo",) in paths and ("prep", "synthetic") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: actdet " + " ".join(path) in capsys.readouterr().out


def test_only_working_subcommands_are_offered():
    # Later issues add run/detect/link/eval/train/test/model when they work; none may exist as a stub.
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in top.choices.items():
        assert sub.get_default("func") is not None or any(
            isinstance(a, argparse._SubParsersAction) for a in sub._actions
        ), name


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "detection.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_bad_override_is_one_clear_error(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "data.synthetic.vidoes=2"])
    assert status == 2
    err = capsys.readouterr().err
    assert "actdet demo: error:" in err and "did you mean 'videos'" in err
    assert "Traceback" not in err


def test_prep_synthetic_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["prep", "synthetic", "--out", str(out), "--videos", "2", "--seconds", "5", "--seed", "3",
                 "--no-frames", "--quiet"]) == 0
    assert (out / "manifest.json").is_file()
    assert (out / "annotations" / "val.csv").stat().st_size > 0
    assert not (out / "frames").exists()
    assert str(out) in capsys.readouterr().out
