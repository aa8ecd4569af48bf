"""Forms carried out once: the same form sent twice at once (a double-click on its button, a
resubmission before the first answer came back) does its work once.

A form that creates something carries a one-time id (:func:`new_form_id`). What a page records
of a used form in the session cookie cannot tell such a second request: it carries the cookie
from before the first answer. :class:`FormsOnce` (one per console, ``forms_once(request)``)
makes the second wait for the first and answer with the first's outcome, kept in memory
``KEEP_SECONDS`` after it, never stored nor logged. A route checks the id it was sent
(:func:`check_form_id`) and runs its work through :func:`run_form`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from .helpers import WebError, principal_of

#: a form's one-time id, as :func:`new_form_id` makes it
FORM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: how long a form's outcome is kept for a second request of it (its cookie is back by then)
KEEP_SECONDS = 30.0
T = TypeVar("T")


def new_form_id() -> str:
    """A one-time id for a form that creates something (its hidden ``form_id`` field)."""
    return secrets.token_urlsafe(16)


@dataclass
class _Form:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    result: Any = None
    at: float = 0.0
    users: int = 0  # the requests holding it (the one at work and those waiting for it)


class FormsOnce:
    """The forms under way or just done in this process, by key (the admin and the form's id)."""

    def __init__(self, keep: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.keep, self.clock = keep, clock
        self._lock = threading.Lock()
        self._forms: dict[str, _Form] = {}

    def run(self, key: str, work: Callable[[], Any]) -> tuple[Any, bool]:
        """``(work(), True)`` for the first request of ``key``; ``(its result, False)`` for a
        later one within ``keep`` seconds, which waits while the first is under way. A first
        request that raised leaves nothing: the next runs ``work`` itself."""
        now = self.clock()
        with self._lock:
            for old in [k for k, f in self._forms.items() if f.done and f.at + self.keep < now]:
                del self._forms[old]
            form = self._forms.setdefault(key, _Form())
            form.users += 1
        try:
            with form.lock:
                if form.done:
                    return form.result, False
                form.result, form.done, form.at = work(), True, self.clock()
                return form.result, True
        finally:
            with self._lock:  # a form whose work raised, and that no other request waits for, goes
                form.users -= 1
                if not form.done and not form.users and self._forms.get(key) is form:
                    del self._forms[key]

    def __len__(self) -> int:
        """How many forms are kept (under way, or done within ``keep`` seconds)."""
        with self._lock:
            return len(self._forms)


def forms_once(request: Request) -> FormsOnce:
    """The console's :class:`FormsOnce` (made with its application)."""
    forms: FormsOnce = request.app.state.forms_once
    return forms


def check_form_id(form_id: str, page: str) -> None:
    """A 422 when the form sent an id (``form_id``) that :func:`new_form_id` did not make; ``page``
    names the page whose form to fill in again ("the API tokens page")."""
    if form_id and not FORM_ID_RE.match(form_id):
        raise WebError(422, f"the form's id is not valid: open {page} again and fill in the form there")


def run_form(request: Request, form_id: str, work: Callable[[], T]) -> tuple[T, bool]:
    """:meth:`FormsOnce.run` of the form ``form_id`` posted to the request's path by its admin:
    ``(work(), True)`` the first time, ``(its result, False)`` for the same form sent again at
    once (a double-click); a form without an id does its work each time (``(work(), True)``)."""
    if not form_id:
        return work(), True
    outcome: tuple[T, bool] = forms_once(request).run(f"{principal_of(request).name}:{request.url.path}:{form_id}", work)
    return outcome


def form_once(request: Request, form_id: str, page: str, work: Callable[[], T]) -> T:
    """``work()`` once for the form ``form_id`` of ``page`` (the page to open again when its id is
    not valid): sent twice at once (a double-click), the second request waits for the first and
    gets its outcome; a form without an id does its work each time."""
    check_form_id(form_id, page)
    return run_form(request, form_id, work)[0]
