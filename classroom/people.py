"""Who is asking: a person, not a workspace, and what one person may take of the server.

    person = person_of(request)            # from a gradio Request: "user:<name>" or "ip:<address>"
    people = People(Budgets.from_env())
    people.allow(person, "workspace")      # OverBudget (a message saying what to do) past the hourly cap

A workspace costs nothing to make, so a budget per workspace is no budget: one loop makes thousands.
The budgets here are per person: the signed-in Hugging Face user when the Space enables sign-in,
else the client address as the Space's proxy reports it. A client can write its own
`x-forwarded-for`; the proxy appends the address it really saw, so the entry `AVP_TRUSTED_PROXIES`
places from the right is the one nobody can forge (1 on a Hugging Face Space, detected by its
`SPACE_ID`; 0 elsewhere, where the socket's own address is used). A class is usually behind one
school address, so the defaults let thirty students on one address all work, while one loop from
one address cannot take everything. Persons are kept as a short hash (no address is written to disk).
No framework import, no gradio import.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

HOUR_S = 3600.0
LOCAL = "local"  # a caller without a request (the CLI, tests calling handlers directly)


class OverBudget(ValueError):
    """One person has used up a budget; the message says which, and what to do."""


@dataclass(frozen=True)
class Budgets:
    """What one person (an address, or a signed-in user) may use. The defaults serve thirty students
    behind one school address: a few new workspaces and uploads each per hour, one run each."""
    workspaces_per_hour: int = 120  # new workspaces (a reload keeps one; a new private window makes one)
    runs: int = 30  # runs waiting or training at once
    uploads_per_hour: int = 120  # uploads tried, refused ones too (each costs unpacking and checking)
    disk_bytes: int = 8 * 2**30  # all of the person's workspaces together

    @classmethod
    def from_env(cls) -> Budgets:
        """`AVP_PERSON_WORKSPACES_PER_HOUR`, `AVP_PERSON_RUNS`, `AVP_PERSON_UPLOADS_PER_HOUR`,
        `AVP_PERSON_DISK_GB` (README, settings table)."""
        env = os.environ.get
        return cls(workspaces_per_hour=int(env("AVP_PERSON_WORKSPACES_PER_HOUR", 120)),
                   runs=int(env("AVP_PERSON_RUNS", 30)),
                   uploads_per_hour=int(env("AVP_PERSON_UPLOADS_PER_HOUR", 120)),
                   disk_bytes=int(float(env("AVP_PERSON_DISK_GB", 8)) * 2**30))


def trusted_hops() -> int:
    """`AVP_TRUSTED_PROXIES`: proxies in front of the app that append to x-forwarded-for; default 1 on
    a Hugging Face Space (it sets SPACE_ID), else 0 (the socket address is the client's)."""
    default = 1 if os.environ.get("SPACE_ID") else 0
    return max(0, int(os.environ.get("AVP_TRUSTED_PROXIES", default)))


def client_address(request, hops: int | None = None) -> str:
    """The client's address: the x-forwarded-for entry the nearest trusted proxy appended (`hops`
    from the right: entries left of it are whatever the client wrote), else the socket's address."""
    hops = trusted_hops() if hops is None else hops
    if hops:
        headers = getattr(request, "headers", None) or {}
        forwarded = [part.strip() for part in str(headers.get("x-forwarded-for", "")).split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


def person_of(request, hops: int | None = None) -> str:
    """A short stable key for whoever sent `request` (a gradio Request; None: LOCAL): the signed-in
    user when there is one, else the client's address. Hashed, so no address is kept or written."""
    if request is None:
        return LOCAL
    username = getattr(request, "username", None)
    who = f"user:{username}" if username else f"ip:{client_address(request, hops)}"
    return hashlib.sha256(who.encode()).hexdigest()[:16]


class People:
    """Hourly counts per person of what has an hourly budget (workspaces made, uploads tried)."""

    def __init__(self, budgets: Budgets | None = None, clock=time.monotonic):
        self.budgets = budgets or Budgets.from_env()
        self.clock = clock
        self.lock = threading.Lock()
        self.times: dict[tuple[str, str], deque[float]] = {}  # (person, kind) -> recent times

    def cap(self, kind: str) -> int:
        return {"workspace": self.budgets.workspaces_per_hour, "upload": self.budgets.uploads_per_hour}[kind]

    def allow(self, person: str, kind: str) -> None:
        """Count one `kind` for `person`, or raise OverBudget when their last hour is full."""
        now, cap = self.clock(), self.cap(kind)
        with self.lock:
            self._forget_before(now - HOUR_S)
            times = self.times.setdefault((person, kind), deque())
            if len(times) >= cap:
                minutes = max(1, round((times[0] + HOUR_S - now) / 60))
                raise OverBudget(refusal(kind, cap, minutes))
            times.append(now)

    def _forget_before(self, cutoff: float) -> None:
        for key in list(self.times):
            times = self.times[key]
            while times and times[0] < cutoff:
                times.popleft()
            if not times:
                del self.times[key]


def refusal(kind: str, cap: int, minutes: int) -> str:
    what = {"workspace": "new workspaces", "upload": "uploads"}[kind]
    advice = {"workspace": "reload this page in the browser you used before (it keeps your workspace) "
                           "instead of opening new private windows",
              "upload": "train on a data set you have already uploaded"}[kind]
    return (f"{cap} {what} an hour is the most one address (or one signed-in user) may make, and yours "
            f"has made them: {advice}, or try again in about {minutes} minute(s)")
