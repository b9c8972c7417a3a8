"""Runs a pybert command line tool (python -m pybert.cli.NAME) as a user would."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def run_tool(name, *args, check=True):
    """The tool's CompletedProcess (text output). The working directory is the temporary
    directory: the source tree holds no compiled pybert._C and must not shadow the
    installed package."""
    proc = subprocess.run([sys.executable, "-m", f"pybert.cli.{name}", *args],
                          capture_output=True, text=True, timeout=900, cwd=tempfile.gettempdir())
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return proc


def _descendants(pid):
    """The PIDs of the processes below pid (read from /proc; none elsewhere)."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def kill_tool_once(name, args, ready):
    """Starts the tool and SIGKILLs it as soon as ready() is true (polled every 10 ms);
    fails if the tool ends first, or if a process it started (a worker) is still running
    10 s after it was killed."""
    proc = subprocess.Popen([sys.executable, "-m", f"pybert.cli.{name}", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.01)
        assert proc.poll() is None, f"{name} ended before it could be killed"
        below = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_running(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in below if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"{name}: processes {left} still ran 10 s after it was killed"


def kill_tool_when(name, args, progress, at_least):
    """Starts the tool and SIGKILLs it once its JSON progress file `progress` records at
    least `at_least` chunks ("chunks"); fails if the tool ends first. Returns the record."""
    kill_tool_once(name, args, lambda: progress.exists()
                   and json.loads(progress.read_text())["chunks"] >= at_least)
    return json.loads(progress.read_text())
