"""Removing files a process left behind when it died mid-way: one pass over a set of paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def remove_files_older_than(paths: Iterable[Path], modified_before: float, *, dry_run: bool = False) -> tuple[int, int]:
    """Remove each regular file of `paths` last written before `modified_before` (epoch seconds); returns
    (count, bytes). Symbolic links and directories are left alone, and a file gone meanwhile is skipped.
    Blocking."""
    count = freed = 0
    for path in paths:
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        if not path.is_file() or path.is_symlink() or stat.st_mtime > modified_before:
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        count += 1
        freed += stat.st_size
    return count, freed
