"""Bound context: who and where, said once (``bind``, ``context``, ``set_user``), carried by every event logged there.

It lives in a ``ContextVar``, so each thread and each asyncio task has its own, a task inherits its creator's
at creation, and a ``with evlog.context(...)`` block restores the outer one on the way out. ``log_event`` reads
it on the caller's thread (processors run on evlog's own thread, where the app's context is not visible), and
the event is built from both later: explicit arguments win, ``data`` keys merge (the call's win), labels add
up. Threads evlog starts run with an empty context, as every new thread does.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import attrs

from evlog._errors import InvalidEventError
from evlog._event import User
from evlog._validate import bad, check_data, check_labels

__all__ = ["Bound", "bind", "bound", "clear", "context", "current", "set_user"]


@attrs.frozen(slots=True)
class Bound:
    """One immutable set of bound fields; binding more makes a new one, so a copy is never shared wrongly."""

    user: User | None = None
    session_id: str | None = None
    category: str | None = None
    labels: tuple[str, ...] = ()
    data: Mapping[str, Any] = attrs.field(factory=dict)

    def merged(self, fields: Mapping[str, Any]) -> Bound:
        """This context with ``fields`` on top: scalars replaced, labels added, data keys merged."""
        user, session_id, category, labels, data = check_bound(fields)
        return Bound(
            user=user if "user" in fields else self.user,
            session_id=session_id if "session_id" in fields else self.session_id,
            category=category if "category" in fields else self.category,
            labels=self.labels + tuple(label for label in labels if label not in self.labels),
            data={**self.data, **data} if data else self.data,
        )


_bound: ContextVar[Bound | None] = ContextVar("evlog_bound_context", default=None)
bound = _bound.get
#: False until something is bound anywhere: until then ``log_event`` does not even read the context variable,
#: so an app that never binds pays nothing for the feature.
used = False


def current() -> Bound:
    """What is bound here now (an empty ``Bound`` when nothing is)."""
    return _bound.get() or Bound()


def _set(value: Bound | None) -> Token[Bound | None]:
    global used
    used = True
    return _bound.set(value)


def bind(**fields: Any) -> None:
    """Bind ``user``, ``session_id``, ``category``, ``labels`` and ``data`` for the rest of this context.

    Like structlog's ``bind_contextvars``: it lasts until ``clear()`` or the end of the thread or task; for a
    block, use ``with evlog.context(...)``. Bad values raise ``InvalidEventError`` here, naming the field.
    """
    _set(current().merged(fields))


def set_user(user: User | None = None, /, **fields: Any) -> None:
    """``bind(user=...)``: ``set_user(User(id="u-42"))``, or ``set_user(id="u-42", email=...)``."""
    if user is not None and fields:
        raise TypeError("pass a User or its fields (id=..., email=...), not both")
    bind(user=user if user is not None or not fields else User(**fields))


def clear() -> None:
    """Forget everything bound in this context."""
    _bound.set(None)


class context:  # lower case: used like contextlib.suppress
    """``with evlog.context(user=..., data=...):`` (or ``async with``): bound for the block, restored after.

    Blocks nest: an inner block adds to the outer one's fields and the outer ones are back when it ends.
    """

    def __init__(self, **fields: Any) -> None:
        self._bound = current().merged(fields)  # checked now, where the mistake was made
        self._tokens: list[Token[Bound | None]] = []

    def __enter__(self) -> Bound:
        self._tokens.append(_set(self._bound))
        return self._bound

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _bound.reset(self._tokens.pop())

    async def __aenter__(self) -> Bound:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


_FIELDS = ("user", "session_id", "category", "labels", "data")


_Checked = tuple[User | None, str | None, str | None, tuple[str, ...], dict[str, Any]]


def check_bound(fields: Mapping[str, Any]) -> _Checked:
    """The fields ``bind`` takes, checked as ``log_event`` checks them; the error names the field."""
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise InvalidEventError(
            f"cannot bind {unknown[0]!r}: the context holds {', '.join(_FIELDS)} (put other values in data={{...}})"
        )
    user = fields.get("user")
    if user is not None and not isinstance(user, User):
        raise InvalidEventError(f"user must be an evlog.User or None, got {type(user).__name__} {user!r:.60}")
    for name in ("session_id", "category"):
        value = fields.get(name)
        if value is not None and type(value) is not str:
            bad(name, value)
    labels = check_labels(fields["labels"]) if fields.get("labels") is not None else ()
    data = check_data(fields["data"]) if fields.get("data") is not None else {}
    return user, fields.get("session_id"), fields.get("category"), labels, data
