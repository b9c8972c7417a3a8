"""The README's commands stay true: every pybert tool it invokes exists and
accepts every flag it is given there, every repository script and file it
names exists, and every import in its Python examples resolves.

(The quickstart runs the GLUE commands end to end; the tools' own tests run
the others with the same flags on real data.)
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    cmds = []
    for block in _blocks("bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def _scripts() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(pybert-[\w-]+)\s*=\s*"([\w.]+):main"', section, flags=re.M))


SCRIPTS = _scripts()
TOOL_RE = re.compile(r"(?:^|\s)(pybert-[\w-]+|python3? tools/\w+\.py)(\s.*)?$")


def _tool_uses() -> dict[str, set[str]]:
    """module -> flags the README passes to it."""
    uses: dict[str, set[str]] = {}
    for cmd in _commands():
        m = TOOL_RE.search(cmd)
        if not m:
            continue
        tool, args = m.group(1), m.group(2) or ""
        if tool.startswith("python"):
            if tool.endswith("quickstart.py"):
                continue
            wrapper = (ROOT / tool.split()[1]).read_text()
            module = re.search(r"from (pybert\.cli\.\w+) import main", wrapper).group(1)
        else:
            assert tool in SCRIPTS, f"README runs {tool}, which pyproject.toml does not install"
            module = SCRIPTS[tool].rsplit(":", 1)[0]
        flags = {f.lstrip("-") for f in re.findall(r"(?:^|\s)(--[a-z_0-9]+)", args)}
        uses.setdefault(module, set()).update(flags)
    return uses


def test_readme_tools_accept_its_flags():
    uses = _tool_uses()
    assert len(uses) >= 8, sorted(uses)  # the workflow's tools are all there
    # one process; each tool module imported afresh (pybert's modules dropped and
    # their flags deleted in between: several tools define the same flag names)
    code = ("import importlib, json, sys\nfrom absl import flags\nout = {}\n"
            "base = set(flags.FLAGS)\n"
            "for m in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k.startswith('pybert.cli')]:\n"
            "        del sys.modules[k]\n"
            "    for f in set(flags.FLAGS) - base:\n"
            "        delattr(flags.FLAGS, f)\n"
            "    importlib.import_module(m)\n"
            "    out[m] = sorted(set(flags.FLAGS) - base)\n"
            "print(json.dumps(out))")
    res = subprocess.run([sys.executable, "-c", code, *sorted(uses)], capture_output=True,
                         text=True, cwd=tempfile.gettempdir(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    defined = json.loads(res.stdout.strip().splitlines()[-1])
    for m in uses:
        if not defined[m]:  # an argparse tool (the official evaluation script's interface)
            helped = subprocess.run(
                [sys.executable, "-c", f"from {m} import main; main(['--help'])"],
                capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=120)
            defined[m] = [f.lstrip("-") for f in re.findall(r"--[a-z_0-9]+", helped.stdout)]
    common = {"helpfull", "help", "helpshort", "helpxml", "flagfile", "undefok"}
    bad = {m: sorted(f for f in flags if f not in defined[m] and f not in common)
           for m, flags in uses.items()}
    bad = {m: f for m, f in bad.items() if f}
    assert not bad, f"README passes flags these tools do not define: {bad}"


def test_readme_repository_paths_exist():
    paths = set()
    for cmd in _commands():
        paths.update(re.findall(r"(?:^|\s)((?:tools|bench|tests|pybert)/[\w./-]+\.(?:py|sh|txt))",
                                cmd))
        paths.update(re.findall(r"--input_data_dir=(tools/[\w/]+)", cmd))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_readme_images_and_links_exist():
    targets = re.findall(r"\]\(((?:bench|tools|csrc|tests)/[^)#]+)\)", README)
    assert any(t.endswith(".png") for t in targets)
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, missing


def test_readme_python_imports_resolve():
    pytest.importorskip("tensorflow")
    names = []
    for block in _blocks("python"):
        for line in block.splitlines():
            code = line.split("#", 1)[0].strip()
            m = re.match(r"from ([\w.]+) import (.+)$", code)
            if m:
                names += [(m.group(1), n.strip()) for n in m.group(2).split(",")]
            elif re.match(r"import ([\w.]+)$", code):
                names.append((code.split()[1], None))
    assert len(names) >= 10
    for module, name in names:
        mod = importlib.import_module(module)
        if name is not None:
            assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}"), \
                f"README: from {module} import {name}"
