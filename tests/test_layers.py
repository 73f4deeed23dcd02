"""The layers hold: every import points down (service -> jobs -> stages -> stream -> models),
checked by import-linter on the contracts in pyproject.toml, so a wrong arrow fails the tests
as well as CI."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path = ROOT) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def test_every_import_points_down():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_stage_importing_a_job_breaks_the_contract(tmp_path):
    """The contract bites: an arrow from stages/ up to jobs/ fails it."""
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in ("service", "jobs", "stages", "stream", "models"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("ui", "__pycache__"))
    (copy / "stages" / "_upward_import_probe.py").write_text("import jobs.schema  # noqa: F401\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "stages._upward_import_probe -> jobs.schema" in result.stdout
