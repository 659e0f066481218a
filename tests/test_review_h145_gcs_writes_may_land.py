"""Review h145: a GCS write that ends on a server error says it may have landed.

A 5xx answer to a request that was sent tells nothing of whether GCS applied it; the S3
store says "may or may not have been applied" for every write that ends so, and so did GCS's
create-only and if-match uploads. GCS's overwrites and deletes (repeated: harmless) did not:
after three 5xx answers their error read as if nothing had been written, though any of the
three may have been. A 429 is a refusal (nothing written) and says nothing of the kind.
"""

from __future__ import annotations

import pytest
from test_review_h139_gcs_errors import _outcome

from vactor_cloud.errors import RateLimitedError, RetryableStorageError

MAY_HAVE_LANDED = "may or may not have been applied"
WRITES = ["overwrite", "delete", "create", "if-match"]


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_write_ending_on_a_server_error_says_it_may_have_been_applied(status: int, operation: str) -> None:
    error, _ = _outcome(status, operation)
    assert isinstance(error, RetryableStorageError), repr(error)
    assert MAY_HAVE_LANDED in str(error), str(error)


@pytest.mark.parametrize("operation", WRITES)
def test_a_write_refused_with_429_does_not_say_it_may_have_been_applied(operation: str) -> None:
    error, _ = _outcome(429, operation)
    assert type(error) is RateLimitedError, repr(error)
    assert MAY_HAVE_LANDED not in str(error), str(error)


@pytest.mark.parametrize("operation", ["get", "list"])
@pytest.mark.parametrize("status", [500, 503])
def test_a_read_ending_on_a_server_error_speaks_of_no_write(status: int, operation: str) -> None:
    error, _ = _outcome(status, operation)
    assert isinstance(error, RetryableStorageError), repr(error)
    assert "applied" not in str(error), str(error)
