"""Progress lines read into steps, totals, time left and rate: real models' logs, the common variants, hostile logs.

The fixtures under fixtures/progress_logs/ are excerpts of real logs, each naming on its first line where it was
taken from; what they must read as is in `FIXTURES` below.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.provider.progress import ProgressReading, parse_progress, read_progress

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "progress_logs"

FIXTURES: dict[str, ProgressReading] = {
    # ComfyUI's tqdm redraws and then a timestamp follows on the same line; the second redraw wins.
    "flux_comfyui.txt": ProgressReading(
        fraction=1.0, step=4, total_steps=4, remaining_seconds=0.0, seconds_per_step=2.78
    ),
    "qwen_image_comfyui.txt": ProgressReading(
        fraction=1.0, step=14, total_steps=14, remaining_seconds=0.0, seconds_per_step=5.75
    ),
    # `step=0 steps=0 ... progress=0` of the server's trace lines is no progress line; the bar before them is.
    "wan21_i2v_sdnext.txt": ProgressReading(
        fraction=0.96, step=48, total_steps=50, remaining_seconds=57.0, seconds_per_step=28.5
    ),
    # `epoch 3/80` is no step count: the bar before it is read, its postfix (`avr_loss=nan`) ignored.
    "kohya_sd_scripts_training.txt": ProgressReading(
        fraction=82 / 3280, step=82, total_steps=3280, remaining_seconds=3900.0, seconds_per_step=1.22
    ),
    # `[0/2] [1/13]` nests two counters, so neither is read: the last bar is.
    "stable_diffusion_videos.txt": ProgressReading(
        fraction=1.0, step=50, total_steps=50, remaining_seconds=0.0, seconds_per_step=1 / 2.71
    ),
    "animatediff_webui.txt": ProgressReading(fraction=0.0, step=0, total_steps=20),
    "wan22_fastvideo.txt": ProgressReading(
        fraction=0.25, step=3, total_steps=12, remaining_seconds=4.0, seconds_per_step=1 / 1.94
    ),
}


def _log(name: str) -> str:
    """The fixture's log, without its header line naming the source."""
    text = (FIXTURE_DIR / name).read_text(encoding="utf-8")
    header, _, log = text.partition("\n")
    assert header.startswith("# ") and "http" in header, f"{name} must name its source on its first line"
    return log


def _assert_reads(reading: ProgressReading | None, expected: ProgressReading) -> None:
    assert reading is not None
    assert (reading.step, reading.total_steps) == (expected.step, expected.total_steps)
    assert reading.fraction == pytest.approx(expected.fraction)
    for got, want in (
        (reading.remaining_seconds, expected.remaining_seconds),
        (reading.seconds_per_step, expected.seconds_per_step),
    ):
        assert got == (None if want is None else pytest.approx(want))


def test_every_fixture_has_its_expectation() -> None:
    assert sorted(path.name for path in FIXTURE_DIR.glob("*.txt")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_real_model_logs_read_as_their_last_progress_line(name: str) -> None:
    log = _log(name)
    _assert_reads(read_progress(log), FIXTURES[name])
    assert parse_progress(log) == pytest.approx(FIXTURES[name].fraction)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (" 45%|████▌     | 9/20 [00:01<00:01,  7.1it/s]", ProgressReading(0.45, 9, 20, 1.0, 1 / 7.1)),
        ("  0%|          | 0/50 [00:00<?, ?it/s]", ProgressReading(0.0, 0, 50)),
        (" 10%|█         | 5/50 [00:14<02:05,  2.78s/it]", ProgressReading(0.1, 5, 50, 125.0, 2.78)),
        (" 50%|█████     | 10/20 [01:02:03<1:00:00,  0.50it/s]", ProgressReading(0.5, 10, 20, 3600.0, 2.0)),
        ("Sampling:  45%|████▌     | 9/20 [00:01<00:01,  7.1it/s]", ProgressReading(0.45, 9, 20, 1.0, 1 / 7.1)),
        ("100%|██████████| 28/28 [00:05<00:00,  5.10it/s]", ProgressReading(1.0, 28, 28, 0.0, 1 / 5.1)),
        ("9/20 [00:01<00:01, 7.1it/s]", ProgressReading(0.45, 9, 20, 1.0, 1 / 7.1)),
        ("| 3/10 [00:00]", ProgressReading(0.3, 3, 10)),
        (" 45%|████▌     |", ProgressReading(0.45)),
        ("Step 12/50", ProgressReading(0.24, 12, 50)),
        ("step 12 of 50", ProgressReading(0.24, 12, 50)),
        ("[12/50]", ProgressReading(0.24, 12, 50)),
        ("Sampling step 12/50", ProgressReading(0.24, 12, 50)),
        ("12/50 steps", ProgressReading(0.24, 12, 50)),
        ("Denoising step 12 / 50", ProgressReading(0.24, 12, 50)),
        ("Progress: 45%", ProgressReading(0.45)),
        ("progress 12.5 %", ProgressReading(0.125)),
    ],
)
def test_a_line_of_each_format_reads(line: str, expected: ProgressReading) -> None:
    _assert_reads(read_progress(f"Using seed: 42\n{line}\n"), expected)


def test_tqdm_redraws_separated_by_carriage_returns_read_the_last() -> None:
    logs = "\r".join(
        [
            "",
            "  0%|   | 0/4 [00:00<?, ?it/s]",
            " 50%|█▌ | 2/4 [00:01<00:01,  1.9it/s]",
            " 75%|██▎| 3/4 [00:01<00:00,  2.0it/s]",
        ]
    )
    _assert_reads(read_progress(logs), ProgressReading(0.75, 3, 4, 0.0, 0.5))


@pytest.mark.parametrize(
    "line",
    [
        "2024/05/01 12:00:00 started",
        "Generated 1/2 images",
        "GET https://example.com/files/12/50/out.png",
        "Downloading https://example.com/step/12/50",
        "see https://example.com/a/12/50 steps",
        "CUDA 12/4 compat, torch 2.1",
        "epoch 3/80",
        "total=1 step=0 steps=0 progress=0",
        "[0/2] [1/13] Generating frames 4-7",
        "Prompt executed in 16.68 seconds",
    ],
)
def test_lines_that_are_no_progress_are_not_read(line: str) -> None:
    assert read_progress(line) is None


def test_no_logs_are_no_reading() -> None:
    assert read_progress(None) is None
    assert read_progress("") is None
    assert parse_progress(None) is None


def test_a_huge_log_is_read_quickly_from_its_tail() -> None:
    noise = ("x" * 99 + "\n") * 100_000  # 10 MB of lines
    bar = " 60%|██████    | 30/50 [00:10<00:06,  3.0it/s]\n"
    for logs in (noise + bar, "9" * 10_000_000 + "\n" + bar, "| " + "9" * 10_000_000):
        started = time.perf_counter()
        reading = read_progress(logs)
        assert time.perf_counter() - started < 0.5
        assert reading is None or reading.step == 30
    # Progress older than the tail is not looked for: only what a model printed last matters.
    assert read_progress(bar + noise) is None


def test_a_line_cut_by_the_tail_is_not_read_as_a_shorter_one() -> None:
    # `112/50 steps` cut to `12/50 steps` would be a lie; the fragment is dropped.
    assert read_progress("1" + "12/50 steps" + " " * 100_000) is None


@pytest.mark.parametrize(
    "line",
    [
        "99999999999999999999/3 [00:00<00:00, 1.0it/s]",
        "step 99999999999999999999 of 3",
        "Progress: 1e300000%",
        f"{'9' * 5000}/{'9' * 5000} [00:00]",
        "0/0 [00:00<?, ?it/s]",
        "Step 3/0",
        "[5/0]",
    ],
)
def test_huge_numbers_and_zero_totals_are_no_progress(line: str) -> None:
    assert read_progress(line) is None


@pytest.mark.parametrize(
    "rate",
    ["nanit/s", "NaN s/it", "infit/s", "inf s/it", "1e300000it/s", "0.00it/s", "0s/it", "-2.5it/s", "?it/s", ""],
)
def test_rates_that_are_no_number_are_none(rate: str) -> None:
    reading = read_progress(f" 45%|████▌     | 9/20 [00:01<00:01, {rate}]")
    assert reading is not None and reading.step == 9
    assert reading.seconds_per_step is None


def test_readings_are_clamped_and_finite() -> None:
    over = read_progress("30/20 [00:01<00:00, 5.0it/s]")
    assert over is not None and (over.step, over.fraction) == (20, 1.0)
    assert read_progress("Progress: 999%") == ProgressReading(1.0)
    _assert_reads(read_progress("| 1/3 [00:00<00:00, 0.000000001it/s]"), ProgressReading(1 / 3, 1, 3, 0.0, 1e9))
    # A percent with no counts keeps the percent, whatever the counts would have said.
    assert read_progress(f" 7%|█ | {'9' * 5000}/{'9' * 5000} [00:00]") == ProgressReading(0.07)
    assert read_progress("  0%|          | 0/0 [00:00<?, ?it/s]") == ProgressReading(0.0)
