#!/usr/bin/env python3
"""Build dist/axon.pyz: one file holding Axon and its dependencies, C extensions included.

    python3 build_zipapp.py [--output dist/axon.pyz] [--wheels DIR] [--constraint FILE]

Dependencies (``install_requires`` in setup.cfg) are installed as binary wheels with this
interpreter's pip into a staging dir (``--wheels DIR`` installs from a local wheel dir with no
index).  The archive runs only on the Python minor version and platform it was built with.
At run time the archive extracts its packages once to a per-build cache dir (see
axon/zipapp_boot.py; override with AXON_CACHE_DIR).

The output is reproducible: the same inputs (sources and wheels) give the same bytes, because
entries are sorted, timestamps fixed (SOURCE_DATE_EPOCH, default 1980-01-01) and modes
normalised.  Unpinned requirements resolve to the newest wheels, so pin them with
``--constraint`` (or use ``--wheels``) for byte-identical builds over time.
"""
from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from typing import Iterator

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "axon"
BOOT_SOURCE = os.path.join(ROOT, PACKAGE, "zipapp_boot.py")
PAYLOAD = "site-packages/"
BUILD_INFO = "axon-build.json"
SHEBANG = b"#!/usr/bin/env python3\n"
ZIP_EPOCH = 315532800   # 1980-01-01, the earliest time a zip entry can hold
SKIP_TOP_DIRS = {"bin"}   # pip's console scripts: they name the build machine's interpreter
SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """The build cannot go on; printed on one line."""


def requirements(setup_cfg: str) -> list[str]:
    """install_requires from setup.cfg, one requirement per entry."""
    parser = configparser.ConfigParser()
    if not parser.read(setup_cfg):
        raise BuildError(f"cannot read {setup_cfg}")
    raw = parser.get("options", "install_requires", fallback="")
    return [line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("#")]


def package_version(package_dir: str) -> str:
    with open(os.path.join(package_dir, "__init__.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    if not match:
        raise BuildError(f"no __version__ in {package_dir}/__init__.py")
    return match.group(1)


def pip_install(target: str, reqs: list[str], wheels: str | None, constraint: str | None) -> None:
    """Install binary wheels only: building from source would be slow and not reproducible."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", target,
           "--only-binary=:all:", "--no-compile", "--disable-pip-version-check",
           "--no-warn-script-location"]
    if wheels:
        cmd += ["--no-index", "--find-links", wheels]
    if constraint:
        cmd += ["--constraint", constraint]
    # installing into a private staging dir as root is fine: silence pip's warning about it
    env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}
    result = subprocess.run(cmd + reqs, stdin=subprocess.DEVNULL, env=env)
    if result.returncode != 0:
        raise BuildError(f"pip install failed (exit {result.returncode}); is pip available for "
                         f"{sys.executable}?")


def walk_files(top: str, skip_top_dirs: set[str]) -> Iterator[tuple[str, str]]:
    """(relative posix path, absolute path) of every file under top, skipping caches."""
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        dirnames[:] = [d for d in dirnames if d != "__pycache__"
                       and not (rel_dir == "." and d in skip_top_dirs)]
        for name in filenames:
            if name.endswith(SKIP_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            yield os.path.relpath(path, top).replace(os.sep, "/"), path


def collect(site_dir: str, package_dir: str) -> dict[str, str]:
    """Archive name -> file on disk for the dependencies and the axon package."""
    files = {PAYLOAD + rel: path for rel, path in walk_files(site_dir, SKIP_TOP_DIRS)}
    for rel, path in walk_files(package_dir, set()):
        files[PAYLOAD + PACKAGE + "/" + rel] = path
    return files


def entry_mode(path: str) -> int:
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def build_id(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + str(entry_mode(files[name])).encode() + b"\0")
        with open(files[name], "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


def zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", ZIP_EPOCH)), ZIP_EPOCH)
    return time.gmtime(epoch)[:6]


def write_archive(output: str, entries: list[tuple[str, bytes, int]]) -> None:
    """Write a shebang plus a zip of (name, data, mode) entries in sorted order, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    stamp = zip_time()
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(SHEBANG)
        with zipfile.ZipFile(f, "w") as archive:
            for name, data, mode in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.create_system = 3   # unix, so the mode bits below mean something
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data, compresslevel=6)
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)


def build(output: str, wheels: str | None = None, constraint: str | None = None) -> dict:
    """Build the archive; return its build info plus size and sha256."""
    package_dir = os.path.join(ROOT, PACKAGE)
    version = package_version(package_dir)
    with tempfile.TemporaryDirectory(prefix="axon-build-") as staging:
        site_dir = os.path.join(staging, "site")
        pip_install(site_dir, requirements(os.path.join(ROOT, "setup.cfg")), wheels, constraint)
        files = collect(site_dir, package_dir)
        info = {"version": version, "build_id": build_id(files),
                "python": "%d.%d" % sys.version_info[:2], "platform": sysconfig.get_platform()}
        entries = [(name, _read(path), entry_mode(path)) for name, path in files.items()]
    with open(BOOT_SOURCE, "rb") as f:
        entries.append(("__main__.py", f.read(), 0o644))
    entries.append((BUILD_INFO, json.dumps(info, sort_keys=True).encode(), 0o644))
    write_archive(output, entries)
    with open(output, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {**info, "size": os.path.getsize(output), "sha256": sha, "files": len(entries)}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/axon.pyz (Axon and its dependencies).")
    parser.add_argument("--output", "-o", default=os.path.join(ROOT, "dist", "axon.pyz"),
                        help="where to write the archive (default: dist/axon.pyz)")
    parser.add_argument("--wheels", help="install dependencies from this wheel dir, without an index")
    parser.add_argument("--constraint", help="pip constraints file pinning dependency versions")
    args = parser.parse_args(argv)
    try:
        result = build(args.output, args.wheels, args.constraint)
    except (BuildError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = result["size"]
    print(f"built {os.path.relpath(args.output)}: {size / 1e6:.1f} MB ({size} bytes), "
          f"{result['files']} files, Python {result['python']} {result['platform']}, "
          f"build {result['build_id']}, sha256 {result['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
