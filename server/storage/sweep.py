"""Removing files a process left behind when it died mid-way: one pass over a set of paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def remove_files_older_than(paths: Iterable[Path], modified_before: float, *, dry_run: bool = False) -> tuple[int, int]:
    """Remove each regular file of `paths` last written before `modified_before` (epoch seconds); returns
    (count, bytes). Symbolic links and directories are left alone; a file gone meanwhile, or one this
    process may not read or remove, is skipped. Blocking."""
    count = freed = 0
    for path in paths:
        try:
            stat = path.lstat()
        except OSError:
            continue
        if not path.is_file() or path.is_symlink() or stat.st_mtime > modified_before:
            continue
        if not dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # not ours to remove: another user's file in a shared temporary directory
                continue
        count += 1
        freed += stat.st_size
    return count, freed
