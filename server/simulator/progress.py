"""Progress lines in the style of tqdm, the way diffusion models print them into Replicate's logs."""

from __future__ import annotations

_BLOCKS = " ▏▎▍▌▋▊▉"
BAR_WIDTH = 10


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def progress_line(done: int, total: int, elapsed: float) -> str:
    """E.g. `` 45%|████▌     | 9/20 [00:01<00:01,  7.1it/s]`` for step 9 of 20 after 1.27 s."""
    fraction = done / total if total else 1.0
    eighths = int(fraction * BAR_WIDTH * 8)
    full, partial = divmod(eighths, 8)
    bar = "█" * full + (_BLOCKS[partial] if partial and full < BAR_WIDTH else "")
    bar = bar.ljust(BAR_WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    remaining = (total - done) / rate if rate > 0 else 0.0
    return f"{fraction * 100:3.0f}%|{bar}| {done}/{total} [{_clock(elapsed)}<{_clock(remaining)}, {rate:4.1f}it/s]"
