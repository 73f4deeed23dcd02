"""Mutation testing of one guard module with mutmut: how many one-line breaks its tests catch.

    python scripts/mutation.py service/addresses.py [--tests tests/test_x.py ...] [--children 1] [--show]
    python scripts/mutation.py --list

mutmut changes one thing at a time in the module (`<=` to `<`, `and` to `or`, a constant,
a dropped argument...) and runs the tests that reach the changed function; a mutant the
tests still pass on "survived" and marks a behaviour no test pins down. It takes minutes
per module, so it is not part of every CI run.

The run happens in a scratch copy of the working tree (outside the repository, so edits
made meanwhile cannot mix in, and with a `shared` link so the copied tests find
../shared/data). mutmut's settings come from [tool.mutmut] in pyproject.toml; this script
narrows `only_mutate` to the one module and the test selection to that module's own test
files (GUARDS below, or --tests). It prints the counts per status, the score
(killed + timeout) / (all - skipped) and the names of the survivors (--show prints each
survivor's diff). Exit status: 0 when the score reaches --min-score (default 0), else 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GUARDS: dict[str, tuple[str, ...]] = {
    "service/addresses.py": ("tests/test_addresses.py",),
    "service/fetch.py": ("tests/test_fetch_rules.py",),  # no sockets: test_fetch.py's real servers wait out deadlines
    "service/uploads.py": ("tests/test_uploads.py",),
    "service/admission.py": ("tests/test_admission.py", "tests/test_limits.py"),
    "jobs/schema.py": ("tests/test_schema.py", "tests/test_schema_properties.py"),
    "stages/segments.py": ("tests/test_segments.py", "tests/test_segments_properties.py"),
    "jobs/targets.py": ("tests/test_targets_rules.py",),  # no face model: test_targets.py loads one a test
    "stages/shots.py": ("tests/test_shots_rules.py",),  # synthetic thumbnails: test_shots.py decodes media (55 s a run)
}
"""The modules that guard users and data, each with the test files that own it."""

HYPOTHESIS_EXAMPLES = 25
"""Examples per property test during a mutation run (the tests' own default is 100-150): every
mutant reruns its module's property tests, and the exact edge cases have unit tests too."""

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into the statuses we report
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
           37: "caught by type check", -11: "segfault", -9: "segfault", None: "not checked"}
_CAUGHT = ("killed", "timeout", "caught by type check", "segfault")


@dataclass(frozen=True)
class MutationScore:
    """Mutant counts of one module by status, and the survivors' names."""

    module: str
    counts: dict[str, int]
    survivors: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(n for status, n in self.counts.items() if status != "skipped")

    @property
    def score(self) -> float:
        """Share of the mutants the tests catch, 0-1 (1.0 for a module with no mutants)."""
        caught = sum(self.counts.get(status, 0) for status in _CAUGHT)
        return caught / self.total if self.total else 1.0


def scratch_copy(dest: Path) -> Path:
    """Copy the working tree's tracked and not-ignored files to dest/repo; link dest/repo/shared."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    repo = dest / "repo"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (repo / "shared").symlink_to(shared, target_is_directory=True)
    return repo


def narrow_config(repo: Path, module: str, tests: Sequence[str]) -> None:
    """Rewrite the copy's [tool.mutmut] so only `module` is mutated and only `tests` run."""
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    if "[tool.mutmut]" not in text:
        raise SystemExit("pyproject.toml has no [tool.mutmut] section")
    head, _, rest = text.partition("[tool.mutmut]")
    settings = tomllib.loads("[tool.mutmut]" + rest.split("\n[", 1)[0])["tool"]["mutmut"]
    settings["only_mutate"] = [module]
    settings["pytest_add_cli_args_test_selection"] = list(tests)
    tail = rest.split("\n[", 1)[1] if "\n[" in rest else ""
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    pyproject.write_text(head + "[tool.mutmut]\n" + "\n".join(lines) + "\n" + ("\n[" + tail if tail else ""))


def read_score(repo: Path, module: str) -> MutationScore:
    meta = repo / "mutants" / (module + ".meta")
    if not meta.is_file():
        raise SystemExit(f"mutmut wrote no results for {module} ({meta} is missing); see its output above")
    exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    statuses = {name: _STATUS.get(code, "suspicious") for name, code in exit_codes.items()}
    survivors = tuple(sorted(name for name, status in statuses.items() if status not in _CAUGHT + ("skipped",)))
    return MutationScore(module=module, counts=dict(Counter(statuses.values())), survivors=survivors)


def run_mutmut(repo: Path, children: int) -> None:
    """Run mutmut, echoing its step lines but not its spinner (it redraws one line with \\r).

    mutmut runs in its own process group, ended with this script (Ctrl-C or a SIGTERM), so
    no orphaned mutant keeps running tests in the scratch copy."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)  # a skip is not a mutant kill: keep CI's skip-is-failure rule out of it
    env.setdefault("LIPSYNC_HYPOTHESIS_EXAMPLES", str(HYPOTHESIS_EXAMPLES))
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
                          cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                shown = line.rstrip("\n").split("\r")[-1]
                if shown.strip() and not "\u2800" <= shown.lstrip()[0] <= "\u28ff":  # braille: the spinner
                    print(shown, flush=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def show(repo: Path, names: Sequence[str]) -> None:
    for name in names:
        subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=repo, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", help="module to mutate, e.g. service/addresses.py")
    parser.add_argument("--tests", nargs="+", help="test files to run (default: the module's own, see --list)")
    parser.add_argument("--children", type=int, default=1, help="parallel mutant runs (default 1: CPU is shared)")
    parser.add_argument("--show", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it, for `mutmut show` or "
                        "`mutmut browse` there afterwards (default: a temporary folder, removed)")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 below this score, 0-1")
    parser.add_argument("--list", action="store_true", help="list the guard modules and their test files")
    args = parser.parse_args(argv)
    if args.list or not args.module:
        for module, tests in GUARDS.items():
            print(f"{module:24} {' '.join(tests)}")
        return 0 if args.list else 2
    module = args.module.removeprefix("./")
    if not (ROOT / module).is_file():
        parser.error(f"{module} is not a file of this repository; give a path like service/addresses.py")
    tests = args.tests or GUARDS.get(module)
    if not tests:
        parser.error(f"{module} is not in the guard table; name its test files with --tests")
    missing = [t for t in tests if not (ROOT / t).is_file()]
    if missing:
        parser.error(f"test file(s) not found: {', '.join(missing)}")

    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep} is not empty; name a new folder")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        repo = scratch_copy(work)
        narrow_config(repo, module, tests)
        run_mutmut(repo, args.children)
        result = read_score(repo, module)
        if args.show:
            show(repo, result.survivors)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{module}: " + ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items())))
    for name in result.survivors:
        print(f"  survived: {name}")
    print(f"mutation score {module}: {result.score:.1%} ({result.total} mutants, tests: {' '.join(tests)})")
    return 0 if result.score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
