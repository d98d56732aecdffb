"""The examples' reconnection policy, without a server: the jittered backoff, the reset, the giving up, and
which close codes are retried. Python's (client-examples/python/reconnect.py) and Node's (common.mjs)."""

from __future__ import annotations

import importlib.util
import json
import random
from types import ModuleType

import pytest

from tests.examples.support import EXAMPLES, example_env, require_node_modules, run


def load_reconnect() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reconnect", EXAMPLES / "python" / "reconnect.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reconnect = load_reconnect()


def test_backoff_is_full_jitter_bounded_by_the_cap() -> None:
    base, cap = 0.5, 30.0
    rng, same = random.Random(1012), random.Random(1012)
    for attempt in range(12):
        ceiling = min(cap, base * 2**attempt)
        delays = [reconnect.backoff_delay(attempt, base, cap, rng) for _ in range(200)]
        # Exactly a uniform pick over [0, ceiling]: the same draws from the same seed.
        assert delays == [same.uniform(0, ceiling) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        # Spread over the whole window, not bunched at its top (as "ceiling plus a little jitter" would be).
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9
    assert reconnect.backoff_delay(10_000, base, cap, rng) <= cap  # no overflow, however many attempts


def test_the_attempt_count_resets_once_a_connection_delivers_and_it_gives_up_after_retry_for() -> None:
    now = [0.0]
    retry = reconnect.Reconnect(base=1.0, cap=8.0, give_up_after=60.0, rng=random.Random(3), clock=lambda: now[0])
    ceilings = []
    for _ in range(6):
        ceilings.append(min(retry.cap, retry.base * 2**retry.attempt))
        delay = retry.next_delay()
        assert delay is not None and 0 <= delay <= ceilings[-1]
        now[0] += 10
    assert ceilings == [1, 2, 4, 8, 8, 8]  # doubling, then held at the cap

    now[0] += 1  # 61 s without a delivery
    assert retry.next_delay() is None

    retry.delivered()
    assert retry.attempt == 0
    delay = retry.next_delay()
    assert delay is not None and delay <= 1.0
    assert retry.attempt == 1


# A restart, a going-away, an abnormal close (1006, or no close frame at all), a server error, an init timeout.
RECONNECT = [1012, 1001, 1006, None, 1011, 4408]
# Bad request, unauthorized, forbidden (a revoked key), bad subprotocol, too many connection_inits.
FATAL = [4400, 4401, 4403, 4406, 4429]


@pytest.mark.parametrize("code", RECONNECT)
def test_restarts_and_abnormal_closes_reconnect(code: int | None) -> None:
    assert not reconnect.is_fatal(code)


@pytest.mark.parametrize("code", FATAL)
def test_refusals_and_protocol_errors_are_fatal(code: int) -> None:
    assert reconnect.is_fatal(code)


NODE_CHECK = """
import { Reconnect, backoffDelay, isFatalClose } from "./common.mjs";
let seed = 1012;  // a seeded generator (an LCG), so the draws are the same on every run
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const delays = [];
for (let attempt = 0; attempt < 12; attempt += 1) {
  delays.push([attempt, Array.from({ length: 200 }, () => backoffDelay(attempt, 0.5, 30, random))]);
}
let now = 0;
const retry = new Reconnect({ base: 1, cap: 8, giveUpAfter: 60, random, now: () => now });
const attempts = [];
for (let i = 0; i < 6; i += 1) { attempts.push(retry.attempt); retry.nextDelay(); now += 10; }
now += 1;
const gaveUp = retry.nextDelay() === null;
retry.delivered();
const afterDelivery = retry.attempt;
const huge = backoffDelay(10000, 0.5, 30, random);
const fatal = Object.fromEntries([1012, 1001, 1006, 4408, 4400, 4401, 4403, 4406].map((c) => [c, isFatalClose(c)]));
console.log(JSON.stringify({ delays, attempts, gaveUp, afterDelivery, huge, fatal, none: isFatalClose(null) }));
"""


async def test_node_backoff_is_the_same_full_jitter_with_the_same_reset_and_codes() -> None:
    require_node_modules()
    result = await run(
        "node", "--input-type=module", "-e", NODE_CHECK, env=example_env("http://unused"), cwd=EXAMPLES / "node"
    )
    assert result.code == 0, result
    checked = json.loads(result.stdout)
    for attempt, delays in checked["delays"]:
        ceiling = min(30, 0.5 * 2**attempt)
        assert all(0 <= delay <= ceiling for delay in delays)
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9
    assert checked["attempts"] == [0, 1, 2, 3, 4, 5]
    assert checked["gaveUp"] and checked["afterDelivery"] == 0
    assert 0 <= checked["huge"] <= 30
    fatal = {int(code): value for code, value in checked["fatal"].items()}
    assert fatal == {1012: False, 1001: False, 1006: False, 4408: False, 4400: True, 4401: True, 4403: True, 4406: True}
    assert checked["none"] is False
