"""tests/conftest.py's CI rule: with CI=true a skip for missing media, weights or tools is a
failure naming what is missing; outside CI it stays a skip; GPU-only skips stay skips."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
PROBE = '''
import pytest
pytest.importorskip("a_module_that_is_not_installed")
'''
PROBES = '''
import pytest

def test_needs_media():
    pytest.skip("sample media missing: /nowhere/d12.mp4")

def test_needs_gpu():
    pytest.skip("needs a CUDA GPU")
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probes.py").write_text(PROBES)
    (tmp_path / "test_module_skip.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "--continue-on-collection-errors",
                           str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_missing_input_fails_and_says_what(tmp_path, ci):
    result = _run(tmp_path, ci)
    assert result.returncode != 0
    assert "skipped in CI" in result.stdout
    assert "/nowhere/d12.mp4" in result.stdout
    assert "a_module_that_is_not_installed" in result.stdout
    assert "SKIPPED [1]" in result.stdout and "needs a CUDA GPU" in result.stdout  # GPU stays a skip


def test_outside_ci_missing_inputs_skip_with_their_reason(tmp_path):
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout
    assert "/nowhere/d12.mp4" in result.stdout
