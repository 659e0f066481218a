"""``brief_assertion_messages``: pytest's CI mode (``$CI``, set in CI runs of scripts/test.sh)
diffs the operands of every failed ``==`` in full, which the conformance sweep's mutants (their
assertions fail on purpose, 4 KiB byte strings apart) paid 16-30 s of CPU for."""

from __future__ import annotations

import pytest


def _failed_comparison_message() -> str:
    left, right = b"x" * 64, b"y" * 64
    try:
        assert left == right
    except AssertionError as exc:
        return str(exc)
    raise AssertionError("the comparison passed")


def test_in_ci_mode_a_failed_comparison_of_byte_strings_is_diffed_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    assert "Full diff" in _failed_comparison_message()


def test_the_fixture_leaves_ci_mode_and_its_full_diffs(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("BUILD_NUMBER", "7")
    request.getfixturevalue("brief_assertion_messages")
    message = _failed_comparison_message()
    assert "Full diff" not in message
    assert message.startswith("assert ")  # still says what failed
