"""Pure pieces of the simulator: progress lines, header parsing, the dice, rendering, the catalogue."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from server.simulator import catalogue, media
from server.simulator.config import Dice, SimulatorConfig
from server.simulator.problems import Problem
from server.simulator.progress import progress_line
from server.simulator.validation import parse_duration, parse_prefer_wait, validate_input


def test_progress_line_looks_like_tqdm() -> None:
    assert progress_line(9, 20, 1.27) == " 45%|████▌     | 9/20 [00:01<00:01,  7.1it/s]"
    assert progress_line(20, 20, 2.0).startswith("100%|██████████| 20/20 [00:02<00:00")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("1m", 60), ("1m30s", 90), ("250ms", 0.25), ("1.5h", 5400), ("2", 2), ("0.05s", 0.05)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 s", "5x", "s5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(Problem) as raised:
        parse_duration(text)
    assert raised.value.status == 400


def test_parse_prefer_wait() -> None:
    assert parse_prefer_wait(None) is None
    assert parse_prefer_wait("respond-async") is None
    assert parse_prefer_wait("wait") == 60
    assert parse_prefer_wait("wait=5") == 5
    assert parse_prefer_wait("return=minimal, wait=120") == 60
    assert parse_prefer_wait("waiting") is None


def test_dice_follow_the_seed() -> None:
    config = SimulatorConfig(seed=1)
    dice = Dice(config)
    first = [dice.chance(0.5) for _ in range(20)]
    config.seed = 2
    dice.chance(0.5)
    config.seed = 1
    assert [dice.chance(0.5) for _ in range(20)] == first
    assert not dice.chance(0) and dice.chance(1)


def test_catalogue_is_consistent() -> None:
    assert len({m.version_id for m in catalogue.MODELS}) == len(catalogue.MODELS)
    for model in catalogue.MODELS:
        assert model.owner == "darkroom-sim"
        example = {
            key: "https://example.com/a.png" if value == catalogue.EXAMPLE_IMAGE else value
            for key, value in model.example_input.items()
        }
        assert validate_input(model, example) == []
        assert model.kind in {c.slug for c in catalogue.COLLECTIONS}
        orders = [p["x-order"] for p in model.properties.values()]
        assert orders == sorted(orders) == list(range(len(orders)))
        if model.image_field:
            assert model.properties[model.image_field]["format"] == "uri"
            # Real models may take the picture optionally (minimax/video-01's first frame).
            assert model.image_field in model.required or model.copied_from is not None
        if model.copied_from is not None:
            assert model.source and "/" in model.copied_from


def test_aspect_sizes() -> None:
    assert media.aspect_size("1:1") == (512, 512)
    assert media.aspect_size("16:9") == (512, 288)
    assert media.aspect_size("9:16") == (288, 512)


def test_every_image_format_decodes() -> None:
    for fmt, pillow_name in (("png", "PNG"), ("webp", "WEBP"), ("jpg", "JPEG")):
        data = media.render_image("formats", 1, 160, 96, fmt)  # type: ignore[arg-type]
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size) == (pillow_name, (160, 96))


def test_video_codec_is_h264_mp4() -> None:
    assert media.video_format().content_type == "video/mp4"
    assert media.video_format().codec == "libx264"
