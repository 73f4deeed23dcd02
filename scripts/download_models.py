"""Download the product's model weights into MODELS_DIR, in the layout every loader reads.

    python scripts/download_models.py --models-dir weights [--only NAME ...] [--list]

Each file is fetched from its official public source (models/manifest.py), resumed with
an HTTP Range request when a `.part` file is left from an interrupted run, checked for
size and sha256 where the manifest knows them, and only then moved into place. Files
already present and valid are skipped, so the command can be re-run at any time.
Each model's license is printed: InsightFace buffalo_l is for non-commercial research
only and the CodeFormer weights are non-commercial.

MODELS_BASE_URL (or --base-url) replaces every source with BASE/<path in MODELS_DIR>, for
a local mirror or for tests.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.manifest import MODELS, ModelFile, ModelSpec, default_models_dir, get_model  # noqa: E402

log = logging.getLogger("download_models")

CHUNK = 1 << 20
ATTEMPTS = 3


class DownloadError(RuntimeError):
    """A file that could not be fetched or did not verify; the message names it."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, spec: ModelFile) -> str | None:
    """None when `path` matches the manifest's size and hash (those it knows), else what is wrong."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"size {size} bytes, expected {spec.size}"
    if spec.sha256 is not None or spec.sha256_prefix is not None:
        actual = sha256_of(path)
        if spec.sha256 is not None and actual != spec.sha256.lower():
            return f"sha256 {actual}, expected {spec.sha256}"
        if spec.sha256_prefix is not None and not actual.startswith(spec.sha256_prefix.lower()):
            return f"sha256 {actual}, expected one starting with {spec.sha256_prefix}"
    return None


def source_url(spec: ModelFile, base_url: str | None) -> str:
    return f"{base_url.rstrip('/')}/{spec.path}" if base_url else spec.url


def _fetch_into(client: httpx.Client, url: str, part: Path) -> None:
    """Append the rest of `url` to `part`, asking for the bytes it lacks; restart if the server ignores Range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:
            return  # the part file already holds the whole file; verification decides
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code}")
        if response.headers.get("content-type", "").startswith("text/html") and not url.endswith(".html"):
            raise DownloadError(f"{url}: the server sent an HTML page instead of the file (a login, quota or confirmation page?)")
        mode = "ab" if response.status_code == 206 else "wb"
        if mode == "ab" and not response.headers.get("content-range", "").startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url}: the server resumed at the wrong place ({response.headers.get('content-range')})")
        if offset and mode == "wb":
            log.info("%s: server ignored the resume request, downloading from the start", url)
        with part.open(mode) as handle:
            for block in response.iter_bytes():  # as it arrives, so a drop keeps what came
                handle.write(block)


def download_file(client: httpx.Client, spec: ModelFile, models_dir: Path, base_url: str | None = None) -> str:
    """Make MODELS_DIR/spec.path present and valid. Returns "present" or "downloaded"."""
    dest = models_dir / spec.path
    if dest.is_file():
        problem = verify(dest, spec)
        if problem is None:
            return "present"
        log.warning("%s: %s; downloading it again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = source_url(spec, base_url)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _fetch_into(client, url, part)
            break
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS:
                raise DownloadError(f"{url}: transfer failed after {ATTEMPTS} attempts ({exc}); run again to resume") from exc
            log.warning("%s: %s; resuming (attempt %d of %d)", url, exc, attempt + 1, ATTEMPTS)
    problem = verify(part, spec)
    if problem is not None:
        part.unlink()
        raise DownloadError(f"{dest}: downloaded file from {url} does not verify: {problem}")
    part.replace(dest)
    return "downloaded"


def extract(zip_path: Path, target: Path) -> None:
    """Unpack `zip_path` into `target`, dropping a single top-level folder if the archive has one."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        tops = {Path(m.filename).parts[0] for m in members}
        strip = len(tops) == 1 and all(len(Path(m.filename).parts) > 1 for m in members)
        for member in members:
            parts = Path(member.filename).parts[1 if strip else 0 :]
            if not parts or ".." in parts or Path(member.filename).is_absolute():
                raise DownloadError(f"{zip_path}: unsafe path in archive: {member.filename}")
            out = target.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def is_installed(model: ModelSpec, models_dir: Path) -> bool:
    """True when an archive model is unpacked (its files need no re-check)."""
    if model.extract_to is None:
        return False
    return all((models_dir / model.extract_to / name).is_file() for name in model.extracted)


def install(client: httpx.Client, model: ModelSpec, models_dir: Path, base_url: str | None = None) -> dict[str, str]:
    """Download (and unpack) one model; returns {path: "present" | "downloaded" | "extracted"}."""
    if is_installed(model, models_dir):
        return {model.extract_to: "present"}
    results = {spec.path: download_file(client, spec, models_dir, base_url) for spec in model.files}
    if model.extract_to is not None:
        for spec in model.files:
            extract(models_dir / spec.path, models_dir / model.extract_to)
            (models_dir / spec.path).unlink()
        missing = [n for n in model.extracted if not (models_dir / model.extract_to / n).is_file()]
        if missing:
            raise DownloadError(f"{model.name}: the archive lacks {', '.join(missing)}")
        results[model.extract_to] = "extracted"
    return results


def license_line(model: ModelSpec) -> str:
    note = "  [NON-COMMERCIAL]" if model.non_commercial else ""
    return f"{model.name}: license: {model.license}{note}"


def parse_args(argv: Sequence[str] | None, models: Sequence[ModelSpec]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Download model weights into MODELS_DIR.")
    parser.add_argument("--models-dir", type=Path, default=default_models_dir(), help="target folder (env MODELS_DIR, default ./weights)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"models to fetch: {', '.join(m.name for m in models)}")
    parser.add_argument("--base-url", default=os.environ.get("MODELS_BASE_URL"), help="mirror serving BASE/<path> (env MODELS_BASE_URL)")
    parser.add_argument("--list", action="store_true", help="list the models and their licenses, download nothing")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout per read in seconds (default 60)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, models: Sequence[ModelSpec] = MODELS) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv, models)
    models = tuple(models)
    try:
        chosen = [get_model(n, models) for n in args.only] if args.only else list(models)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.list:
        for model in chosen:
            print(f"{license_line(model)}\n    {model.description}; files: {', '.join(f.path for f in model.files)}")
        return 0
    failures = 0
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(args.timeout)) as client:
        for model in chosen:
            print(license_line(model))
            try:
                for path, state in install(client, model, args.models_dir, args.base_url).items():
                    print(f"    {state:10s} {args.models_dir / path}")
            except (DownloadError, OSError, zipfile.BadZipFile) as exc:
                failures += 1
                print(f"    FAILED     {exc}", file=sys.stderr)
    if any(m.non_commercial for m in chosen):
        print("Note: models marked NON-COMMERCIAL may not be used in a commercial product.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
