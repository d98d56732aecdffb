"""Run the client examples as subprocesses, without blocking the event loop the live server runs in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import IN_CI

EXAMPLES = Path(__file__).resolve().parents[2] / "client-examples"


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def example_env(base_url: str, **extra: str) -> dict[str, str]:
    """The caller's environment without any Darkroom or Replicate settings, pointed at `base_url`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("DARKROOM_", "REPLICATE_"))}
    env["DARKROOM_URL"] = base_url
    env.update(extra)
    return env


async def run(*command: str | Path, env: dict[str, str], cwd: Path | None = None, timeout: float = 90) -> Finished:
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(f"{command} ran over {timeout} s\n{stdout.decode()}\n{stderr.decode()}") from None
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


class Background:
    """A long-running example whose output goes to files, read while it runs."""

    def __init__(self, process: asyncio.subprocess.Process, stdout: Path, stderr: Path) -> None:
        self.process = process
        self.stdout_path = stdout
        self.stderr_path = stderr

    @classmethod
    async def start(cls, *command: str | Path, env: dict[str, str], logs: Path) -> Background:
        logs.mkdir(parents=True, exist_ok=True)
        stdout, stderr = logs / "stdout", logs / "stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(*map(str, command), env=env, stdout=out, stderr=err)
        return cls(process, stdout, stderr)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    async def finish(self, timeout: float = 60) -> Finished:
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"still running after {timeout} s\n{self.stdout}\n{self.stderr}") from None
        assert self.process.returncode is not None
        return Finished(self.process.returncode, self.stdout, self.stderr)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(ProcessLookupError):
                await self.process.wait()


def require_programs(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def require_node_modules() -> None:
    require_programs("node")
    if not (EXAMPLES / "node" / "node_modules" / "graphql-ws").is_dir():
        message = "the Node example's dependencies are not installed (npm ci --prefix client-examples/node)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
