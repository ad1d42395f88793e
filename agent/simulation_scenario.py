"""The simulation's script runner: steps on a story clock that waits for the agent's decisions.

A step happens no earlier than its time in the story, and only once the agent has decided what the
step depends on (``first``): a camera has let the resident in, the gate has locked again, the arm is
up for her car.  After the step the story waits for the agent's reaction (``then``): the grant
recorded, the door's opening recorded, the car counted.  Waiting moves the rest of the story back by
as long, so the gaps between steps stay as written, and a slow machine (one Raspberry Pi core:
``make check-pi-speed``) sees the same steps with the same outcomes, only later.  A decision that
never comes ends the story with a message saying which, rather than going on into a different story.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.events import Event

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger("edge_agent.simulation")

# How long the story waits for one decision before it gives up.  Generous: a replayed video plays
# slower where decoding it takes longer than a frame, and recognition then takes several times as long
# as at full speed (`make check-pi-speed`, with something else busy on that core too).
WAIT_SECONDS = 120.0
# A wait longer than this is said in the log, so that a pause in the story does not look like a hang.
SAY_WAITING_AFTER = 2.0
POLL_SECONDS = 0.2  # how often a wait on a state (a lock, an arm, a count) looks again


class StoryStopped(Exception):
    """The agent is stopping (Ctrl-C, SIGTERM): the story ends there, without a word."""


class DecisionMissing(Exception):
    """A decision the story waits for never came; the message says which, and what was decided."""


class Watch:
    """The events the agent has recorded so far (it calls its listeners once an event is stored)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.events: list[Event] = []
        self.changed = threading.Condition()
        agent.listeners.append(self._recorded)

    def _recorded(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def close(self) -> None:
        """Stop listening (with ``--keep-running`` the agent goes on recording, for hours)."""
        if self._recorded in self.agent.listeners:
            self.agent.listeners.remove(self._recorded)

    def mark(self) -> int:
        with self.changed:
            return len(self.events)

    def seen(self, since: int, type_: str, device: str | None, details: dict[str, Any]) -> bool:
        """Whether an event of ``type_`` (at ``device``, with these details) was recorded after ``since``."""
        with self.changed:
            return any(event.type == type_ and device in (None, event.device)
                       and all(event.details.get(key) == value for key, value in details.items())
                       for event in self.events[since:])

    def decisions(self) -> str:
        """The access decisions so far, for a message: where someone was let in or refused, and how."""
        with self.changed:
            made = [f"{event.type} at {event.device} by {event.details.get('method')}" for event in self.events
                    if event.type in ("access.granted", "access.denied")]
        return ", ".join(made) or "none"


@dataclass(frozen=True)
class Wait:
    """A decision of the agent that the story waits for; ``done(watch, since)`` says whether it has
    come, ``since`` being how many events had been recorded when the step began."""

    what: str  # as the log says it: "gate main to lock again"
    done: Callable[[Watch, int], bool]


def recorded(what: str, type_: str, device: str | None = None, **details: Any) -> Wait:
    """Such an event recorded since the step began (a door opens several times in one story)."""
    return Wait(what, lambda watch, since: watch.seen(since, type_, device, details))


def decided(what: str, type_: str, device: str | None = None, **details: Any) -> Wait:
    """Such an event recorded at any time: a camera decides on its video's clock, not the story's."""
    return Wait(what, lambda watch, since: watch.seen(0, type_, device, details))


def holds(what: str, check: Callable[[Agent], bool]) -> Wait:
    """A state of the agent's devices or counts: a gate locked, an arm up, a car counted."""
    return Wait(what, lambda watch, since: check(watch.agent))


@dataclass(frozen=True)
class Step:
    at: float  # seconds into the story, at the earliest
    say: str
    action: Callable[[Agent], None]
    first: tuple[Wait, ...] = ()  # what the agent must have decided before the step can happen
    then: tuple[Wait, ...] = ()  # the agent's reaction, before the story goes on


class Scenario:
    """Create it before ``agent.start()`` (so that it sees agent.started too), then :meth:`play`."""

    def __init__(self, agent: Agent, steps: list[Step], last: tuple[Wait, ...] = (),
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self.agent = agent
        self.steps = sorted(steps, key=lambda step: step.at)
        self.last = last  # decided before the story ends: the cameras' last decisions
        self.wait_seconds = wait_seconds
        self.watch = Watch(agent)

    def play(self) -> None:
        """Run the steps in order; raises :class:`DecisionMissing` or :class:`StoryStopped`."""
        try:
            self._play()
        finally:
            self.watch.close()

    def _play(self) -> None:
        started = time.monotonic()
        behind = 0.0  # how far the story has fallen behind its times, waiting for the agent
        for step in self.steps:
            since = self.watch.mark()
            self._sleep_until(started + step.at + behind)
            self._wait(step.first, since, f"before: {step.say}")
            behind = max(behind, time.monotonic() - (started + step.at))
            log.info("scenario: %s", step.say)
            step.action(self.agent)
            self._wait(step.then, since, f"after: {step.say}")
        self._wait(self.last, self.watch.mark(), "before the story ends")

    def _sleep_until(self, due: float) -> None:
        if self.agent.stopping.wait(max(0.0, due - time.monotonic())):
            raise StoryStopped

    def _wait(self, waits: tuple[Wait, ...], since: int, where: str) -> None:
        for wait in waits:
            started = time.monotonic()
            said = False
            while not wait.done(self.watch, since):
                waited = time.monotonic() - started
                if self.agent.stopping.is_set():
                    raise StoryStopped
                if waited >= self.wait_seconds:
                    raise DecisionMissing(
                        f"the story waited {self.wait_seconds:.0f} s for {wait.what} ({where}) and it never "
                        f"came; access decisions so far: {self.watch.decisions()}. The log above says what the "
                        "agent did instead.")
                if not said and waited >= SAY_WAITING_AFTER:
                    log.info("scenario: (waiting for %s)", wait.what)
                    said = True
                with self.watch.changed:  # woken by the next recorded event, or looks again soon
                    self.watch.changed.wait(POLL_SECONDS)
