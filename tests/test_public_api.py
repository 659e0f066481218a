"""The public surface: __all__ is sorted and complete, errors are their builtins too."""

from __future__ import annotations

import pickle

import pytest

import vactor_cloud
from vactor_cloud import errors


def test_all_is_sorted_and_names_only_public_attributes() -> None:
    assert vactor_cloud.__all__ == sorted(vactor_cloud.__all__)
    for name in vactor_cloud.__all__:
        assert hasattr(vactor_cloud, name), name


def test_every_public_error_is_exported_from_the_errors_module() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert sorted(c.__name__ for c in classes if c.__module__ == errors.__name__) == sorted(errors.__all__)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.NotFoundError("k: gone", "k"), FileNotFoundError),
        (errors.AlreadyExistsError("k: taken", "k"), FileExistsError),
        (errors.ActorNotFoundError("a", "memory://x"), LookupError),
        (errors.InvalidActorIdError("bad"), ValueError),
        (errors.StateSerializationError("no"), TypeError),
        (errors.OtherPythonError("CodeType compiled by cpython-99: ..."), ImportError),
        (errors.CommitConflictError("a", 3), errors.VactorError),
        (errors.CommitOutcomeUnknownError("a", 3), errors.VactorError),
        (errors.IntegrityError("k", "checksum mismatch"), errors.VactorError),
        (errors.FormatVersionError("k", "upgrade vactor_cloud"), errors.IntegrityError),
        (errors.StepNotFoundError("a", 1, (2, 3), compacted=True), LookupError),
        (errors.VirtualActorNotInitializedError("a"), errors.ActorNotFoundError),
        (errors.StateProtocolError("A defines __getstate__ but not __setstate__"), ValueError),
    ],
)
def test_errors_are_also_the_builtin_they_resemble_and_survive_pickling(
    error: Exception, builtin: type[Exception]
) -> None:
    assert isinstance(error, builtin)
    assert isinstance(error, errors.VactorError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)


def test_storage_errors_carry_the_key() -> None:
    error = errors.PreconditionFailedError("actors/a/HEAD: version changed", "actors/a/HEAD")
    assert error.key == "actors/a/HEAD"
    assert "actors/a/HEAD" in str(pickle.loads(pickle.dumps(error)))
