"""Progress lines in the style of tqdm, the way diffusion models print them into Replicate's logs."""

from __future__ import annotations

_BLOCKS = " ▏▎▍▌▋▊▉"
BAR_WIDTH = 10


def _clock(seconds: float) -> str:
    """tqdm's interval: ``mm:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(done: int, total: int, elapsed: float) -> str:
    """E.g. `` 45%|████▌     | 9/20 [00:01<00:01,  7.09it/s]`` for step 9 of 20 after 1.27 s.

    As tqdm writes it: the mean rate so far (``s/it`` once a step takes longer than a second), and the
    remaining time at that rate (``?`` with no rate yet)."""
    fraction = done / total if total else 1.0
    eighths = int(fraction * BAR_WIDTH * 8)
    full, partial = divmod(eighths, 8)
    bar = "█" * full + (_BLOCKS[partial] if partial and full < BAR_WIDTH else "")
    bar = bar.ljust(BAR_WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    if rate <= 0:
        return f"{fraction * 100:3.0f}%|{bar}| {done}/{total} [{_clock(elapsed)}<?, ?it/s]"
    speed = f"{1 / rate:5.2f}s/it" if rate < 1 else f"{rate:5.2f}it/s"
    remaining = (total - done) / rate
    return f"{fraction * 100:3.0f}%|{bar}| {done}/{total} [{_clock(elapsed)}<{_clock(remaining)}, {speed}]"
