"""The upload examples (Python with gql, Node with fetch and FormData, curl -F), run as a user runs them against a
live server: a file of one's own goes up as a GraphQL multipart request, and an image comes back as a video."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.examples.conftest import Client
from tests.examples.support import EXAMPLES, example_env, require_programs, run
from tests.support.darkroom import Darkroom
from tests.uploads.support import mp4, png

UPLOAD_SH = EXAMPLES / "curl" / "upload.sh"


def check_video(stdout: str, out: Path) -> None:
    assert "started generation " in stdout and "darkroom-sim/" in stdout, stdout
    (downloaded,) = [line for line in stdout.splitlines() if line.startswith("downloaded ")]
    assert "video/" in downloaded and "sha256 ok" in downloaded, stdout
    (file,) = out.iterdir()
    assert file.name.startswith(hashlib.sha256(file.read_bytes()).hexdigest()[:16])


async def test_an_uploaded_image_comes_back_as_a_video(client: Client, darkroom: Darkroom, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png(80, 60))
    out = tmp_path / "downloads"
    result = await run(*client.upload, image, "--prompt", "slow zoom", "--out", out, env=example_env(darkroom.base_url))
    assert result.code == 0, result
    assert "uploaded media " in result.stdout and "(IMAGE image/png 80x60 " in result.stdout, result
    check_video(result.stdout, out)


async def test_a_video_is_uploaded_and_a_forged_file_refused(
    client: Client, darkroom: Darkroom, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(mp4(seconds=1.0))
    env = example_env(darkroom.base_url)
    result = await run(*client.upload, clip, "--out", tmp_path / "none", env=env)
    assert result.code == 0, result
    assert "(VIDEO video/mp4 64x48 " in result.stdout and "started generation" not in result.stdout, result

    forged = tmp_path / "forged.png"
    forged.write_text("not an image at all\n")
    refused = await run(*client.upload, forged, env=env)
    assert refused.code == 2, refused
    assert "UNSUPPORTED_FILE file:" in refused.stderr, refused


@pytest.mark.parametrize("kind", ["image", "forged"])
async def test_curl_uploads_with_a_multipart_request(darkroom: Darkroom, tmp_path: Path, kind: str) -> None:
    require_programs("bash", "curl", "jq", "openssl")
    file = tmp_path / "photo.png"
    file.write_bytes(png(40, 30) if kind == "image" else b"text, not pixels\n")
    out = tmp_path / "downloads"
    env = example_env("unused", OUT_DIR=str(out), PROMPT="drift")
    result = await run("bash", UPLOAD_SH, file, darkroom.base_url, env=env)
    if kind == "forged":
        assert result.code == 2 and '"code":"UNSUPPORTED_FILE"' in result.stderr, result
        return
    assert result.code == 0, result
    assert "(IMAGE image/png 40x30 " in result.stdout, result
    check_video(result.stdout, out)
