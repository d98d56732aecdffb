"""Scratch files in the temporary directory: local copies a download is probed from, uploads being checked.

Each is removed by its owner when it is done; a process killed mid-way leaves its files behind, and the
cleanup pass removes those older than SCRATCH_MAX_AGE_SECONDS (`remove_stale_scratch`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from server.storage.sweep import remove_files_older_than

# The name prefixes of Darkroom's scratch files: only these are ever swept.
PROBE_SCRATCH_PREFIX = "darkroom-probe-"
UPLOAD_SCRATCH_PREFIX = "darkroom-upload-"
SCRATCH_PREFIXES = (PROBE_SCRATCH_PREFIX, UPLOAD_SCRATCH_PREFIX)


def remove_stale_scratch(modified_before: float, *, dry_run: bool = False) -> tuple[int, int]:
    """Remove the scratch files last written before `modified_before` (epoch seconds): (count, bytes)."""
    directory = Path(tempfile.gettempdir())
    paths = (path for prefix in SCRATCH_PREFIXES for path in directory.glob(f"{prefix}*"))
    return remove_files_older_than(paths, modified_before, dry_run=dry_run)
