"""Entry point of dist/axon.pyz: extract the bundled packages once to a cache dir, then run the CLI.

zipimport cannot load C extensions (gevent, greenlet, plyvel, msgpack, cryptography), so the
archive carries its packages under ``site-packages/`` and the first start extracts them to
``<cache>/<version>-<build id>/``.  The cache root is ``$AXON_CACHE_DIR``, else
``$XDG_CACHE_HOME/axon``, else ``~/.cache/axon``.  Extraction goes to a private temporary
directory that is renamed into place in one step, so concurrent first starts never see (or
leave) a half-extracted cache: the loser of the rename race discards its copy.

The build script copies this file into the archive as ``__main__.py``; it uses the standard
library only, because nothing else is importable before extraction.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import stat
import sys
import tempfile
import time
import zipfile

BUILD_INFO = "axon-build.json"
PAYLOAD = "site-packages/"
STALE_TMP_SECONDS = 3600


class BootError(Exception):
    """The archive cannot be started here; the message is printed on one line."""


def cache_root(environ: dict | None = None) -> str:
    """Where extracted builds live: $AXON_CACHE_DIR, $XDG_CACHE_HOME/axon or ~/.cache/axon."""
    env = os.environ if environ is None else environ
    if env.get("AXON_CACHE_DIR"):
        return os.path.abspath(env["AXON_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(base, "axon"))


def read_build_info(archive: zipfile.ZipFile) -> dict:
    try:
        info = json.loads(archive.read(BUILD_INFO))
    except (KeyError, ValueError) as exc:
        raise BootError(f"not an Axon archive (no valid {BUILD_INFO}): {exc}") from None
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str)
                                             for k in ("version", "build_id", "python")):
        raise BootError(f"not an Axon archive ({BUILD_INFO} is incomplete)")
    return info


def check_python(info: dict) -> None:
    here = "%d.%d" % sys.version_info[:2]
    if info["python"] != here:
        raise BootError(f"this archive was built for Python {info['python']} "
                        f"({info.get('platform', 'unknown platform')}); this is Python {here}")


def ensure_extracted(archive_path: str, root: str | None = None) -> str:
    """Return the directory holding the archive's packages, extracting them on first use."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BootError(f"cannot open {archive_path}: {exc}") from None
    with archive:
        info = read_build_info(archive)
        check_python(info)
        root = root or cache_root()
        target = os.path.join(root, f"{info['version']}-{info['build_id']}")
        if os.path.isdir(target):
            return target
        _make_root(root)
        _remove_stale_tmp(root)
        try:
            tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=root)
        except OSError as exc:
            raise _unwritable(root, exc) from None
        try:
            _extract_payload(archive, tmp)
            _publish(tmp, target)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _unwritable(root, exc) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _make_root(root: str) -> None:
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise _unwritable(root, exc) from None


def _unwritable(root: str, exc: OSError) -> BootError:
    reason = exc.strerror or str(exc)
    return BootError(f"cannot extract to cache dir {root}: {reason} "
                     f"(set AXON_CACHE_DIR to a writable directory)")


def _extract_payload(archive: zipfile.ZipFile, dest: str) -> None:
    for member in archive.infolist():
        if not member.filename.startswith(PAYLOAD) or member.is_dir():
            continue
        rel = member.filename[len(PAYLOAD):]
        parts = rel.split("/")
        if not rel or rel.startswith("/") or ".." in parts:
            raise BootError(f"refusing unsafe path in archive: {member.filename!r}")
        path = os.path.join(dest, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with archive.open(member) as src, open(path, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        mode = (member.external_attr >> 16) & 0o777
        os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def _publish(tmp: str, target: str) -> None:
    """Rename the finished extraction into place; if another process won the race, use its copy."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not os.path.isdir(target):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_tmp(root: str) -> None:
    """Best effort: drop temporary dirs left by extractions that were killed long ago."""
    now = time.time()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        if name.startswith(".") and ".tmp-" in name:
            try:
                if now - os.stat(path).st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def activate(site_dir: str) -> None:
    """Put the extracted packages first on sys.path (and honour their .pth files)."""
    if site_dir not in sys.path:
        sys.path.insert(0, site_dir)
    site.addsitedir(site_dir)


def archive_path() -> str:
    """The .pyz being run: this file is ``<archive>/__main__.py``."""
    return os.path.abspath(os.path.dirname(__file__) or sys.argv[0])


def main() -> None:
    archive = archive_path()
    try:
        site_dir = ensure_extracted(archive)
    except BootError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    activate(site_dir)
    # the launcher starts its nodes through this same archive
    os.environ["AXON_PYZ"] = archive
    from axon.cli.main import main as cli_main
    cli_main()


if __name__ == "__main__":
    main()
