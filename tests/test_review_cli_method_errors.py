"""``vactor call``: a library error a method's body raised (a nested call's) is the method's
error, exit 1 as docs/cli.md says ("the called method raised"), not the exit code of that
error's kind (3 "not found", 2 "usage"), which would say the called actor or the command was
wrong. The call's own errors keep theirs."""

from __future__ import annotations

import pytest
from cli_harness import Vactor, one_line_error

import vactor_cloud as vc
from vactor_cloud.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE


@vc.virtual_actor
class Relay:
    def __init__(self) -> None:
        self.sent = 0

    def forward(self, to: str) -> int:
        vc.get_actor(to)  # (the body's own call: raises when ``to`` names no actor, or no valid id)
        self.sent += 1
        return self.sent

    @vc.virtual_actor.readonly
    def peek(self, to: str) -> int:
        vc.get_actor(to)
        return self.sent


@pytest.mark.parametrize("method", ["forward", "peek"])
@pytest.mark.parametrize(
    ("to", "raised"), [("nobody-here", "ActorNotFoundError"), ("bad/id", "InvalidActorIdError")]
)
def test_a_library_error_the_method_raised_is_exit_1_naming_the_method(
    store: str, vactor: Vactor, method: str, to: str, raised: str
) -> None:
    vc.init(store)
    Relay.get_or_create("relay")
    vc.shutdown()
    result = vactor("call", "relay", method, f'"{to}"')
    assert result.code == EXIT_ERROR, result.err
    assert f"{method}() raised {raised}" in one_line_error(result)
    vc.init(store)
    assert vc.get_actor("relay").peek.run("relay") == 0  # (forward: not applied)


def test_the_calls_own_errors_keep_their_exit_codes(store: str, vactor: Vactor) -> None:
    vc.init(store)
    Relay.get_or_create("relay")
    vc.shutdown()
    assert vactor("call", "ghost", "forward", '"relay"').code == EXIT_NOT_FOUND
    assert vactor("call", "bad/id", "forward", '"relay"').code == EXIT_USAGE
    assert vactor("call", "relay", "forward", '"relay"').code == 0
