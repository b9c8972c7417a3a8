"""Runs a pybert command line tool (python -m pybert.cli.NAME) as a user would."""

import subprocess
import sys
import tempfile


def run_tool(name, *args, check=True):
    """The tool's CompletedProcess (text output). The working directory is the temporary
    directory: the source tree holds no compiled pybert._C and must not shadow the
    installed package."""
    proc = subprocess.run([sys.executable, "-m", f"pybert.cli.{name}", *args],
                          capture_output=True, text=True, timeout=900, cwd=tempfile.gettempdir())
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc
