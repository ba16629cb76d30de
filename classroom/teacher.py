"""The teacher of a class: one key unlocks the Teacher tab, and the class's settings it keeps.

The key is `AVP_TEACHER_KEY` (a Space secret). Entered once on the Teacher tab, it is exchanged for
a token (an HMAC of the key under the server's secret), which the browser keeps like the workspace
id; every teacher action, on the page and over the API, presents the token and is refused without
it. Neither the key nor the token is ever written to a page, an API answer, a log or a URL; both
are compared in constant time. Without the variable there is no teacher: every action is refused.

    teacher.token_for(key, secret)      # the token for the right key, else NotTeacher
    teacher.require(token, secret)      # NotTeacher unless the token is the teacher's
    ClassSettings(state_dir).defaults() # what pre-fills every student's Train tab (TrainConfig fields)

No framework import.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

KEY_ENV = "AVP_TEACHER_KEY"
HOW_TO_ENABLE = (f"The Teacher tab is off on this server. To turn it on, set the secret {KEY_ENV} "
                 "(on a Space: Settings, Variables and secrets, New secret) and restart the app.")


class NotTeacher(PermissionError):
    """An action only the teacher may take, asked without the teacher's key."""


def enabled() -> bool:
    return bool(os.environ.get(KEY_ENV, ""))


def _token(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), b"avp-teacher:" + key.encode(), hashlib.sha256).hexdigest()


def token_for(key: object, secret: str) -> str:
    """The browser's token for the right key; NotTeacher (saying nothing of the key) otherwise."""
    expected = os.environ.get(KEY_ENV, "")
    if not expected:
        raise NotTeacher(HOW_TO_ENABLE)
    if not isinstance(key, str) or not hmac.compare_digest(key.encode(), expected.encode()):
        raise NotTeacher("that is not the teacher's key")
    return _token(expected, secret)


def is_teacher(token: object, secret: str) -> bool:
    expected = os.environ.get(KEY_ENV, "")
    if not expected or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(token.encode(), _token(expected, secret).encode())


def require(token: object, secret: str) -> None:
    """NotTeacher unless `token` is the teacher's (the first line of every teacher action)."""
    if not is_teacher(token, secret):
        raise NotTeacher(HOW_TO_ENABLE if not enabled() else
                         "only the teacher may do this: enter the teacher's key on the Teacher tab")


class ClassSettings:
    """The class's defaults (TrainConfig fields by name, `augment` nested: what pre-fills a new
    student's Train tab; a student's own saved settings win) and caps (the most a student's run may
    ask for), kept in `<state_dir>/class.json`, written atomically."""

    def __init__(self, state_dir: str | Path):
        self.file = Path(state_dir) / "class.json"

    def _read(self) -> dict:
        try:
            state = json.loads(self.file.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, state: dict) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.file)

    def defaults(self) -> dict:
        return dict(self._read().get("defaults", {}))

    def caps(self) -> dict:
        return dict(self._read().get("caps", {}))

    def set_defaults(self, defaults: dict) -> None:
        self._write({**self._read(), "defaults": defaults})

    def set_caps(self, caps: dict) -> None:
        self._write({**self._read(), "caps": caps})
