"""A plain install, not a checkout: the wheel carries the demo's definitions, the migrations and
the pages, so ``bridge dev`` has something to run after ``pip install``.

The wheel is built from this checkout and unpacked into a fresh virtualenv (what pip does with
a wheel); its dependencies come from the test environment's site-packages through a path file,
whose own path files (this checkout's editable install among them) Python does not read.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_of_the_checkout_is_in_the_wheel() -> None:
    """The package list in pyproject.toml is explicit (the examples are mapped into it)."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("bridge", "processors", "approvals")
        for path in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    environment.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(python), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_wheel_install_runs_the_demo_definitions(tmp_path: Path) -> None:
    # Built from a copy: a build in the checkout would leave build/ behind for the next one.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")

    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"  # no ./definitions, no checkout
    work.mkdir()
    where = run(
        python,
        "-c",
        "import bridge, bridge.bootstrap as b, bridge.settings as s;"
        "print(bridge.__file__); print(b.definitions_folder(s.Settings()))",
        cwd=work,
    )
    assert where.returncode == 0, where.stderr
    package, folder = (Path(line) for line in where.stdout.splitlines())
    assert package.is_relative_to(site), "the wheel's bridge, not the checkout's"
    assert folder == site / "bridge" / "examples"
    names = {path.name for path in folder.iterdir()}
    assert {"order-saga.asl.yaml", "try_order.py", "mocks"} <= names

    checked = run(
        python, "-m", "bridge", "validate", *map(str, folder.glob("*.asl.yaml")), cwd=work
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    upgraded = run(python, "-m", "bridge", "db", "upgrade", cwd=work)
    assert upgraded.returncode == 0, upgraded.stderr
    templates = site / "approvals" / "templates"
    assert (templates / "process.html").is_file()
    assert ast.parse((site / "bridge" / "migrations" / "env.py").read_text())
