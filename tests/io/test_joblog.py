"""A job's failure reaches the console even when its log cannot be written."""

from __future__ import annotations

import subprocess
import sys


def test_a_failed_job_names_its_cause_on_the_console_when_the_log_cannot_be_written(tmp_path):
    """Disk full: the log gets nothing, the console still gets the cause in one line."""
    code = ("from traice.io.joblog import start_job\n"
            "start_job('/dev/full')\n"
            "raise OSError(28, 'No space left on device')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "error: OSError: [Errno 28] No space left on device" in out.stderr.splitlines()
