"""The decorated name is the actor class wrapper, not the class: its attributes are ``.cls``'s.

``Job.LIMIT`` (a class variable, a static or class method) reached through the decorated
name is an error, at runtime as for the mypy plugin (``tests/typing/negative_handles.py``);
the runtime's said only ``'ActorClass' object has no attribute 'LIMIT'``, where the
plugin says to use ``Job.cls.LIMIT``.
"""

from __future__ import annotations

import copy
import pickle

import pytest

import vactor_cloud as vc
from vactor_cloud.testing.lanes import StoreSpec


@vc.virtual_actor
class Job:
    LIMIT = 3

    def __init__(self, size: int) -> None:
        self.size = min(size, Job.cls.LIMIT)

    @staticmethod
    def parse(text: str) -> int:
        return int(text)

    @classmethod
    def named(cls) -> str:
        return cls.__name__

    def grow(self) -> int:
        self.size += 1
        return self.size


@pytest.mark.parametrize("name", ["LIMIT", "parse", "named", "grow"])
def test_a_class_attribute_through_the_decorated_name_says_to_use_cls(name: str) -> None:
    with pytest.raises(AttributeError, match=rf"Job is the actor class; .*use Job\.cls\.{name}\)"):
        getattr(Job, name)
    assert getattr(Job.cls, name) is not None


def test_a_name_the_class_lacks_and_dunders_get_the_plain_error() -> None:
    with pytest.raises(AttributeError, match=r"^'ActorClass' object has no attribute 'no_such'$"):
        Job.no_such  # noqa: B018
    with pytest.raises(AttributeError, match=r"^'ActorClass' object has no attribute '__wrapped__'$"):
        Job.__wrapped__  # noqa: B018


def test_the_wrappers_own_names_come_first_and_it_pickles_by_reference() -> None:
    assert callable(Job.get_or_create) and Job.cls.__name__ == "Job"
    assert pickle.loads(pickle.dumps(Job)) is Job
    assert copy.copy(Job) is Job and copy.deepcopy(Job) is Job


@pytest.mark.parametrize(("name", "what"), [("parse", "a staticmethod"), ("named", "a classmethod")])
def test_a_handle_says_why_it_does_not_call_a_static_or_class_method(
    actor_store: StoreSpec, name: str, what: str
) -> None:
    """It said only "has no method 'parse'", of a method the user can see in the class."""
    job = Job.get_or_create("job-1", 1)
    said = rf"has no method '{name}' \('{name}' is {what}: .*its methods: grow"
    with pytest.raises(AttributeError, match=said):
        getattr(job, name)
