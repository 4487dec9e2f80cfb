"""Private file helpers shared by every module that writes results.

One mechanism for every output file of :mod:`ped` (scores, evaluations, features, shards,
manifests, executed notebooks, sweep sidecars):

- :func:`atomic_path` hands out a unique temporary file in the destination's folder; when the
  ``with`` block succeeds the temporary is flushed to disk (``fsync``), given the mode a new file
  would get (``0o666`` less the umask, not ``mkstemp``'s ``0o600``) and renamed onto the
  destination (``os.replace``), so a reader never sees a half-written file; when the block
  raises (including ``KeyboardInterrupt``) the temporary is removed, or kept aside under a name
  the caller chose (a failed notebook), and the destination is left as it was.
- :func:`write_text_atomic`, :func:`write_bytes_atomic`, :func:`write_json_atomic`,
  :func:`write_npz_atomic` and :func:`write_csv_atomic` write one kind of content through it.
- :func:`check_output_path` checks, before any work is done, that a file can be written at a
  path (not a folder, no file in the way of its folder, a writable folder), so that a long
  computation is never lost to an unwritable ``--out``.
- The output rule, enforced by both: an existing destination is replaced only when it is a
  regular file that is not one of the command's inputs.  A device node, a pipe, a socket or a
  symbolic link at the destination is refused (a link is never followed nor replaced: name its
  target to write there), and so is an input of the command (``inputs=``), so that no
  command can destroy what it reads or what the system owns.

Temporaries are hidden files named ``.tmp-<name>.<random>``: no glob of results
(``*_feature.npy``, ``*.json``) ever matches one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
import numpy as np
import hashlib

__all__ = [
    "TMP_PREFIX",
    "file_mode",
    "atomic_path",
    "write_text_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_npz_atomic",
    "write_csv_atomic",
    "check_output_path",
    "refuse_target",
    "sha256_file",
    "read_json_record",
]

#: Prefix of the temporary files of :func:`atomic_path`.
TMP_PREFIX = ".tmp-"


def file_mode() -> int:
    """The mode ``open()`` gives a new file (``0o666`` less the umask); ``mkstemp`` uses
    ``0o600``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    keep_failed_as: str | os.PathLike[str] | None = None,
    suffix: str = "",
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; publish it atomically.

    The folder of ``path`` is created when missing.  The temporary exists (empty) when the block
    starts; write it by name or reopen it.  On success it is fsynced, chmod-ed to
    :func:`file_mode` and renamed onto ``path``.  On any exception it is deleted (or renamed to
    ``keep_failed_as``, with the same mode) and the exception propagates; ``path`` is untouched.
    ``suffix`` ends the temporary's name (for writers that insist on an extension).
    """
    path = Path(path)
    refuse_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=suffix
    )
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        # name the file the caller asked for, not the temporary (only where the error has the
        # errno/strerror form that shows a file name)
        if exc.strerror is not None and (exc.filename is None or str(exc.filename) == tmp):
            exc.filename = str(path)
        _discard(tmp, keep_failed_as)
        raise
    except BaseException:
        _discard(tmp, keep_failed_as)
        raise


def _discard(tmp: str, keep_failed_as: str | os.PathLike[str] | None) -> None:
    """Remove the temporary of a failed :func:`atomic_path` (or keep it as ``keep_failed_as``)."""
    try:
        if keep_failed_as is not None:
            os.chmod(tmp, file_mode())
            os.replace(tmp, keep_failed_as)
        else:
            os.unlink(tmp)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = True, end: str = ""
) -> None:
    """``obj`` as JSON indented by 2 (keys sorted unless ``sort_keys=False``), followed by
    ``end``, through :func:`atomic_path`."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + end)


def write_npz_atomic(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``numpy.savez(path, **arrays)`` through :func:`atomic_path` (the name is kept as given:
    no ``.npz`` is appended)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def write_csv_atomic(frame: Any, path: str | os.PathLike[str]) -> None:
    """A pandas DataFrame as CSV without its index, through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def refuse_target(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """The output rule: raise ``FileExistsError`` naming ``what`` and the path when ``path``
    exists and is not a regular file (a device node, a pipe, a socket), or is a symbolic link
    (never followed nor replaced), or is the same file as one of ``inputs``."""
    path = Path(path)
    if path.is_symlink():
        raise FileExistsError(errno.EEXIST, f"{what} {path} is a symbolic link: name the file "
                              "it points to, or another path", str(path))  # fmt: skip
    if path.exists() and not path.is_file() and not path.is_dir():
        raise FileExistsError(errno.EEXIST, f"{what} {path} exists and is not a regular file "
                              "(a device, pipe or socket): refusing to replace it", str(path))
    if path.is_file() and any(_same_file(path, source) for source in inputs):
        raise FileExistsError(errno.EEXIST, f"{what} {path} is one of the command's inputs: "
                              "refusing to overwrite it", str(path))  # fmt: skip


def _same_file(a: Path, b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist (yet): not the same file
        return False


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_record(path: str | os.PathLike[str], keys: tuple[str, ...], *, what: str
                     ) -> dict[str, Any]:  # fmt: skip
    """The JSON object at ``path`` (a manifest), which must hold ``keys``; anything else (not
    JSON, not an object, a key missing) is a ``ValueError`` naming the file as ``what``."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        for key in keys:
            record[key]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not {what} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not {what} (not a JSON object)")
    return record


def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_path(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Check that the file ``path`` can be written, before any work is done; return it.

    The output rule (:func:`refuse_target`) comes first: a symbolic link, a device, pipe or
    socket, or one of ``inputs`` at ``path`` is a ``FileExistsError``.

    Raises ``IsADirectoryError`` when ``path`` is a folder, ``NotADirectoryError`` when a file
    stands where one of its folders should be, and the ``OSError`` of a write attempt
    (``PermissionError``, a read-only file system...) when its folder is not writable.  Each
    message names ``what`` and the path.  Nothing is left behind: missing folders are not
    created (the writer creates them once the work is done), and a probe file is created in the
    nearest existing folder and removed at once.
    """
    path = Path(path)
    refuse_target(path, what=what, inputs=inputs)
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"{what} {path} is a folder, not a file name", str(path)
        )
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"cannot write {what} {path}: {existing} is a file, not a folder",
            str(existing),
        )
    try:  # probed where the file's folder is, or would be created: nothing is created here
        fd, probe = tempfile.mkstemp(dir=existing, prefix=f"{TMP_PREFIX}{path.name}.")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot write {what} {path}: {reason}", str(path)) from exc
    os.close(fd)
    os.unlink(probe)
    return path
