"""The layout's promise: evaluation and data preparation never pull in torch."""

import subprocess
import sys


def test_light_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import eval, data_prep.synthetic, detection.structures, detection.formats.ava, detection.formats.act\n"
        "import detection.config, detection.cli\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'pytorchvideo') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
