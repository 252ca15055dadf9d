"""The audit line's hand-built JSON is exactly the json module's."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

from restguard.audit import DecisionEvent

ODD = ["", "plain", 'quo"te', "back\\slash", "new\nline", "ü é 漢", "\x00\x1f\x7f", "</script>"]


def test_to_json_matches_json_dumps() -> None:
    rng = random.Random(7)
    for _ in range(500):
        pick = lambda: rng.choice(ODD)  # noqa: E731
        maybe = lambda: rng.choice([None, pick()])  # noqa: E731
        event = DecisionEvent(
            time=pick(),
            method=pick(),
            path=pick(),
            route=maybe(),
            outcome=pick(),
            status=rng.choice([200, 401, 503]),
            error=maybe(),
            auth_method=maybe(),
            credential_id=maybe(),
            client=pick(),
            detail=maybe(),
            duration_ms=rng.choice([0.0, 0.004, 12.5, 1e-7, 123456.789]),
        )
        expected = json.dumps(asdict(event), separators=(",", ":"), ensure_ascii=True)
        assert event.to_json() == expected
        assert json.loads(event.to_json()) == asdict(event)
