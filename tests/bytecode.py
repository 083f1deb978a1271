"""The project's bytecode, compiled once before the test processes start.

Each pytest-xdist process imports every test module, and each ``bridge`` process a test starts
imports the bridge. Without a bytecode cache (a fresh checkout, or ``PYTHONDONTWRITEBYTECODE=1``
as on the CI machines) every one of them compiled the same sources, and pytest rewrote the
asserts of the same ~130 test modules, three times over at the same moment: about 7 s of each
test process's 10-s start. Written here once, in the controlling process, they read it instead.
"""

from __future__ import annotations

import compileall
import fnmatch
from pathlib import Path

import pytest

PACKAGES = ("bridge", "approvals", "processors", "tests")


def warm(config: pytest.Config) -> None:
    """Plain bytecode for the project's packages, assert-rewritten bytecode for the test modules
    (pytest's own cache files, which its import hook checks by source hash). A speed-up only:
    anything unexpected leaves the test processes to compile as before."""
    root = config.rootpath
    for package in PACKAGES:
        if (root / package).is_dir():
            compileall.compile_dir(root / package, quiet=1, workers=0)
    try:
        _rewrite_test_modules(config, root / "tests")
    except (ImportError, AttributeError, KeyError, OSError) as exc:  # pytest's internals moved
        print(f"tests/bytecode.py: test modules not precompiled ({exc!r})")


def _rewrite_test_modules(config: pytest.Config, tests: Path) -> None:
    from _pytest.assertion import rewrite

    state = config.stash[rewrite.assertstate_key]
    patterns = [*config.getini("python_files"), "conftest.py"]
    for source in sorted(tests.rglob("*.py")):
        if not any(fnmatch.fnmatch(source.name, pattern) for pattern in patterns):
            continue
        cache = rewrite.get_cache_dir(source)
        if not rewrite.try_makedirs(cache):
            return
        pyc = cache / (source.name[:-3] + rewrite.PYC_TAIL)
        if rewrite._read_pyc(source, pyc) is not None:
            continue
        try:
            source_hash, code = rewrite._rewrite_test(source, config)
        except SyntaxError:
            continue  # pytest reports it when it collects the module
        rewrite._write_pyc(state, code, source_hash, pyc)
