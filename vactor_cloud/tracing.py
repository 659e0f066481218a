"""OpenTelemetry spans for commits and reads, when ``opentelemetry-api`` is installed.

Not a dependency: without the package every function here is a no-op that
costs a function call. With it, spans go to whatever tracer provider the
application configured (none configured: the API's no-op tracer):

* ``vactor.commit``: one per commit attempt (one create-only put of a step,
  with the log's own read-back), attributes ``vactor.actor_id``,
  ``vactor.step``, ``vactor.attempt`` and ``vactor.outcome``
  (``committed``, ``conflict`` or ``error``);
* ``vactor.read``: one per read-only call, attribute ``vactor.actor_id``.

The import is tried once, when this module is first imported.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

from vactor_cloud.log import StepTakenError

try:
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    #: None without opentelemetry-api
    _tracer: Any = None
    _ERROR: Any = None
    _Proxies: tuple[type, ...] = ()
else:
    # A ProxyTracer: it follows a tracer provider the application sets later.
    _tracer = _otel_trace.get_tracer("vactor_cloud")
    _ERROR = _otel_trace.StatusCode.ERROR
    _Proxies = (_otel_trace.ProxyTracer,)


_PROVIDER_VARIABLE = "OTEL_PYTHON_TRACER_PROVIDER"
#: a tracer provider was seen configured (OpenTelemetry sets one at most once: it stays)
_provider_seen = False


def _live() -> Any:
    """The tracer to use now, or None: the API alone (no provider configured) records nothing,
    and its no-op spans still cost about a sixth of a warm commit's CPU: skip them."""
    global _provider_seen
    tracer = _tracer
    if tracer is None or _provider_seen or not isinstance(tracer, _Proxies):
        return tracer
    # What get_tracer_provider() checks first, without its call: no provider set in code,
    # none named in the environment (this runs on every commit).
    if getattr(_otel_trace, "_TRACER_PROVIDER", True) is None and _PROVIDER_VARIABLE not in os.environ:
        return None
    if isinstance(_otel_trace.get_tracer_provider(), _otel_trace.ProxyTracerProvider):
        return None
    _provider_seen = True
    return tracer


def live() -> bool:
    """Whether spans would be recorded now (OpenTelemetry installed and a provider configured)."""
    return _live() is not None


__all__ = ["actor_span", "commit_attempt", "enabled", "live", "span"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _HasActorId(Protocol):
    actor_id: str


def enabled() -> bool:
    """Whether spans are emitted (``opentelemetry-api`` is importable)."""
    return _tracer is not None


@contextlib.contextmanager
def span(name: str, **attributes: str | int) -> Iterator[Any]:
    """A current span named ``name`` (``None`` without OpenTelemetry); exceptions are recorded on it."""
    tracer = _live()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, attributes={f"vactor.{k}": v for k, v in attributes.items()}
    ) as current:
        yield current


async def commit_attempt(put: Awaitable[T], actor_id: str, step: int, attempt: int) -> T:
    """Await ``put`` (one commit attempt's put of ``step``) inside a ``vactor.commit`` span."""
    tracer = _live()
    if tracer is None:
        return await put
    attributes = {"vactor.actor_id": actor_id, "vactor.step": step, "vactor.attempt": attempt}
    # Exceptions are recorded here, not by the span: a lost race is the protocol
    # working (outcome "conflict"), not an error.
    with tracer.start_as_current_span(
        "vactor.commit", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            result = await put
        except StepTakenError:
            current.set_attribute("vactor.outcome", "conflict")
            raise
        except BaseException as exc:
            current.set_attribute("vactor.outcome", "error")
            current.record_exception(exc)
            current.set_status(_ERROR, str(exc))
            raise
        current.set_attribute("vactor.outcome", "committed")
        return result


def actor_span(name: str) -> Callable[[F], F]:
    """Decorate a method of an object with an ``actor_id``: each call runs in a span ``name``."""

    def decorate(method: F) -> F:
        if _tracer is None:
            return method

        @functools.wraps(method)
        def traced(self: _HasActorId, *args: Any, **kwargs: Any) -> Any:
            with span(name, actor_id=self.actor_id):
                return method(self, *args, **kwargs)

        return traced  # type: ignore[return-value]

    return decorate
