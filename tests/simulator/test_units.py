"""Pure pieces of the simulator: progress lines, header parsing, the dice, rendering, the catalogue."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from server.simulator import catalogue, media, outputs
from server.simulator.config import Dice, SimulatorConfig
from server.simulator.problems import Problem
from server.simulator.progress import progress_line
from server.simulator.validation import parse_duration, parse_prefer_wait, validate_input


def test_progress_line_looks_like_tqdm() -> None:
    assert progress_line(9, 20, 1.27) == " 45%|████▌     | 9/20 [00:01<00:01,  7.09it/s]"
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


def test_progress_line_slower_than_a_step_a_second_and_before_any_rate() -> None:
    assert progress_line(3, 12, 7.5) == " 25%|██▌       | 3/12 [00:07<00:22,  2.50s/it]"
    assert progress_line(0, 20, 0.0) == "  0%|          | 0/20 [00:00<?, ?it/s]"
    assert progress_line(1, 3, 4000.0) == " 33%|███▎      | 1/3 [1:06:40<2:13:20, 4000.00s/it]"


def test_run_units_follow_what_drives_run_time() -> None:
    image, video = (
        catalogue.find_by_ref("darkroom-sim/preview-image"),
        catalogue.find_by_ref("darkroom-sim/slow-boot-video"),
    )
    assert image is not None and video is not None

    def units(model: catalogue.CatalogueModel, given: dict[str, object]) -> float:
        return outputs.run_units(model, outputs.effective_input(model, {"prompt": "p", **given}))

    assert units(image, {}) == 1.0  # one 1 MP picture in 20 steps
    assert units(image, {"width": 512, "height": 512}) == 0.25
    assert units(image, {"num_outputs": 3, "num_inference_steps": 40}) == 6.0
    assert units(video, {}) == 1.0  # 2 s at 8 fps
    assert units(video, {"duration": 5, "fps": 16}) == 5.0
    # Every other model keeps run_seconds exactly, whatever its input.
    for model in catalogue.MODELS:
        if model not in (image, video):
            assert not model.scales_with_input and not model.boots and model.previews == 0
            assert outputs.run_units(model, {"num_outputs": 4, "width": 64, "duration": 5}) == 1.0


def test_previews_come_at_each_quarter_and_are_small_pngs() -> None:
    image = catalogue.find_by_ref("darkroom-sim/preview-image")
    pixel_forge = catalogue.find_by_ref("darkroom-sim/pixel-forge")
    assert image is not None and pixel_forge is not None
    assert outputs.preview_steps(image, 20) == [5, 10, 15]
    assert outputs.preview_steps(image, 2) == [1, 2]
    assert outputs.preview_steps(pixel_forge, 20) == []
    first = media.render_preview("a pier", 4, 1024, 768, 0.25)
    assert first == media.render_preview("a pier", 4, 1024, 768, 0.25)
    assert first != media.render_preview("a pier", 4, 1024, 768, 0.75)
    with Image.open(io.BytesIO(first)) as opened:
        assert opened.format == "PNG" and opened.size == (128, 96)
    assert len(first) < 16_000


def test_jitter_draws_nothing_without_a_spread() -> None:
    plain, jittered = Dice(SimulatorConfig(seed=5)), Dice(SimulatorConfig(seed=5))
    assert jittered.jitter(0.0) == 1.0
    assert jittered.seed() == plain.seed()  # no draw was spent on it
    factors = [jittered.jitter(0.3) for _ in range(50)]
    assert all(0.7 <= factor <= 1.3 for factor in factors) and len(set(factors)) == 50
    again = Dice(SimulatorConfig(seed=5))
    again.seed()
    assert [again.jitter(0.3) for _ in range(50)] == factors
    assert 0.0 <= Dice(SimulatorConfig(seed=5)).jitter(3.0) <= 4.0
