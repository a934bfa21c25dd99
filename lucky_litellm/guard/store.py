"""Guard state in the shared store: which guard runs, at which stage, what each path measured,
and every decision taken, so every replica contributes its calls and obeys the same decision.

One guard *run* at a time. The store holds (in Redis, under the state prefix):

- ``guard`` (hash): status (running, rolled_back, completed, stopped), run id, policy (JSON),
  stage index, when each stage started (the store's clock), and a ``version`` bumped by every
  change: a decision is applied only if the version is still the one it was computed from
  (compare-and-set in one Lua script), so exactly one process acts on each decision;
- ``guard:sum:<run>:<stage>:<path>`` (hashes): the `PathSummary` counters of each stage and path,
  added with HINCRBYFLOAT in batches; a batch lands in the stage that is current when it lands;
- ``guard:req:<request id>`` (strings with a TTL): the run, stage and path of a recent call, so a
  user metric sent later (`lucky_litellm.feedback`) is added to the call's own path and stage;
- ``guard:history`` (list, bounded): one JSON event per start, decision and stop, with the
  figures the decision was based on.

A decision's flag change (the next stage's percentage, or the kill switch) is written in the
same script as the guard's new version, so the percentage moves exactly once per decision. The
in-process `MemoryGuardStore` follows the same rules under a lock, for one process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LuckyError, StateUnavailableError

if TYPE_CHECKING:
    from ..state.flags import FlagStore
    from ..state.redis import RedisConnection
    from .decide import Decision
    from .policy import GuardPolicy
    from .recorder import GuardRecorder
    from .summary import PathSummary

__all__ = [
    "EVALUATE_EVERY_S",
    "HISTORY_MAX",
    "REQUEST_TTL_S",
    "FeedbackError",
    "GuardError",
    "GuardState",
    "GuardStore",
    "MemoryGuardStore",
    "RedisGuardStore",
]

logger = logging.getLogger("lucky_litellm.guard")

GuardStatus = Literal["idle", "running", "rolled_back", "completed", "stopped"]
PathName = Literal["legacy", "registry"]
Action = Literal["advance", "finish", "rollback", "complete"]
"""What an applied decision does: advance to the next stage; finish (advance to a last stage of
100 %, which completes the guard); rollback (the kill switch); complete (the last stage, below
100 %, shown not worse)."""
PATHS: tuple[PathName, PathName] = ("legacy", "registry")

REFRESH_S = 0.3
"""How old this process's view of the guard (running or not, which run) may get."""
EVALUATE_EVERY_S = 1.0
"""How often each serving process reads the current stage's figures and runs the decision."""
MEMORY_EVALUATE_EVERY_S = 0.25
"""In one process the evaluation runs after a call (no background thread): at most this often,
since a decision costs a few hundred µs of CPU."""
REQUEST_TTL_S = 24 * 3600.0
"""How long a call's request id stays known for `feedback` (Redis: a TTL per id)."""
MEMORY_REQUESTS_MAX = 100_000
"""The in-process map of recent request ids keeps at most this many (oldest dropped first)."""
HISTORY_MAX = 1000
"""Events kept in the history (oldest dropped first)."""
SUMMARY_TTL_S = 30 * 24 * 3600.0
"""Per-stage summaries expire this long after their last call (the history keeps the figures)."""


class GuardError(LuckyError, ValueError):
    """A guard command or input is invalid (e.g. a guard is already running, a bad option)."""


class FeedbackError(GuardError):
    """`feedback(request_id, name, value)` got something that cannot be recorded; names the argument."""


@dataclass(frozen=True)
class GuardState:
    """The guard as read from the store. `now` is the store's clock at the read (Redis TIME), so
    every process measures a stage's age on the same clock."""

    status: GuardStatus = "idle"
    run_id: str = ""
    policy_json: str = ""
    stage_index: int = 0
    stage_starts: tuple[float, ...] = ()
    started_at: float = 0.0
    ended_at: float | None = None
    version: int = 0
    now: float = 0.0

    @property
    def active(self) -> bool:
        return self.status == "running"

    @property
    def stage_started_at(self) -> float:
        return self.stage_starts[self.stage_index] if self.stage_index < len(self.stage_starts) else self.now

    @property
    def stage_elapsed_s(self) -> float:
        end = self.now if self.ended_at is None else self.ended_at
        return max(0.0, end - self.stage_started_at)

    def policy(self) -> GuardPolicy:
        from .policy import GuardPolicy

        return GuardPolicy.model_validate(json.loads(self.policy_json))

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "run_id": self.run_id,
            "stage_index": self.stage_index,
            "stage_starts": list(self.stage_starts),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "version": self.version,
            "policy": json.loads(self.policy_json) if self.policy_json else None,
        }


@dataclass
class _Batch:
    """Calls recorded in this process and not yet in the store: counters per path, request ids."""

    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    feedback: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    """Feedback for calls of this batch (or earlier ones), applied after the calls."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """A push whose reply was lost (a timeout) may have landed: sent again under the same id,
    a shared store applies it once."""

    def __bool__(self) -> bool:
        return bool(self.counters or self.requests or self.feedback)


def policy_json(policy: GuardPolicy) -> str:
    return json.dumps(policy.model_dump(mode="json", exclude_none=True), sort_keys=True)


def feedback_increments(request_id: object, name: object, value: object) -> dict[str, float]:
    """The counters one feedback value adds (they do not depend on the call's path)."""
    from .summary import FeedbackObservation, PathSummary

    _, name, value = check_feedback(request_id, name, value)
    return PathSummary.increments(FeedbackObservation("registry", name, value))


def check_feedback(request_id: object, name: object, value: object) -> tuple[str, str, float]:
    """The feedback arguments, or a `FeedbackError` naming the one that is wrong."""
    if not isinstance(request_id, str) or not request_id or len(request_id) > 200:
        raise FeedbackError(f"feedback: request_id must be a non-empty string (got {request_id!r:.60})")
    from .summary import FEEDBACK_NAME

    if not isinstance(name, str) or not FEEDBACK_NAME.match(name):
        raise FeedbackError(
            f"feedback: name must be a metric name such as 'thumbs_up' (a letter or digit, then "
            f"letters, digits, _ . -; at most 64), got {name!r:.60}"
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise FeedbackError(f"feedback: value of {name!r} must be a finite number, got {value!r:.60}")
    return request_id, name, float(value)


class GuardStore(ABC):
    """Guard state of one `State` (memory or Redis). `recording` is the request path's only
    read: None while no guard runs (one attribute check), else the recorder of the running guard."""

    shared: bool = False
    recording: GuardRecorder | None = None

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the guard lives, for people."""

    def __init__(self, flags: FlagStore, *, evaluate_every_s: float = EVALUATE_EVERY_S) -> None:
        self.flags = flags
        self.evaluate_every_s = evaluate_every_s
        self.replica = f"{_hostname()}:{uuid.uuid4().hex[:6]}"
        """How this process signs the decisions it applies (in the history)."""
        self._policies: dict[str, GuardPolicy] = {}
        self.tracer: Any = None
        """Where the decision spans go: the registry's telemetry (`Models` sets it), else the
        global tracer provider."""

    # -- reading ---------------------------------------------------------------------------------

    @abstractmethod
    def read(self) -> GuardState:
        """The guard read now from the store (administrative: may block on I/O)."""

    @abstractmethod
    def counters(self, run_id: str, stage_index: int) -> dict[str, dict[str, float]]:
        """The raw counters of one stage, per path."""

    def summaries(self, run_id: str, stage_index: int) -> tuple[PathSummary, PathSummary]:
        """(legacy, registry) summaries of one stage."""
        from .summary import PathSummary

        raw = self.counters(run_id, stage_index)
        return PathSummary.from_counters(raw.get("legacy", {})), PathSummary.from_counters(
            raw.get("registry", {})
        )

    @abstractmethod
    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Events, oldest first (the last `limit` ones)."""

    def policy_of(self, state: GuardState) -> GuardPolicy:
        policy = self._policies.get(state.run_id)
        if policy is None:
            policy = self._policies[state.run_id] = state.policy()
        return policy

    # -- commands --------------------------------------------------------------------------------

    def start(self, policy: GuardPolicy) -> GuardState:
        """Start a guard run at the policy's first stage (that percentage of users, models
        enabled). A running guard must be stopped first (`GuardError`)."""
        run_id = uuid.uuid4().hex[:12]
        first = policy.percent(0)
        event = {"action": "start", "stage_index": 0, "percent": first, "by": self.replica}
        state = self._start(run_id, policy_json(policy), event)
        # the guard owns the percentage from now on; a write (not a read) so it lands everywhere
        self.flags.set_percent(first)
        self.flags.set_enabled(True)
        self._known(state)
        return state

    def stop(self) -> GuardState:
        """Stop the running guard; the flags stay as they are (the operator takes over)."""
        state = self._stop({"action": "stop", "by": self.replica})
        self._known(state)
        return state

    @abstractmethod
    def _start(self, run_id: str, policy: str, event: dict[str, Any]) -> GuardState: ...

    @abstractmethod
    def _stop(self, event: dict[str, Any]) -> GuardState: ...

    @abstractmethod
    def _apply(
        self,
        state: GuardState,
        action: Action,
        percent: float | None,
        event: dict[str, Any],
    ) -> bool:
        """Compare-and-set: apply `action` (guard state, flags, history) only if the guard is still
        at `state.version`; True for the one caller that applied it."""

    # -- the evaluator -------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any] | None:
        """Read the current stage, decide, and apply an advance or rollback if this process wins
        the compare-and-set. Returns the event it applied (None: hold, no guard, or lost)."""
        from .decide import decide

        state = self.read()
        self._known(state)
        if not state.active:
            return None
        policy = self.policy_of(state)
        legacy, registry = self.summaries(state.run_id, state.stage_index)
        decision = decide(policy, state.stage_index, legacy, registry, state.stage_elapsed_s)
        index = state.stage_index
        current = policy.percent(index)
        action: Action
        percent: float | None
        if decision.action == "rollback":
            action, percent = "rollback", None
        elif decision.action == "advance" and not policy.is_last(index):
            action, percent = "advance", policy.percent(index + 1)
            if policy.is_last(index + 1) and percent >= 100:
                action = "finish"  # at 100 % nobody is left on legacy to compare with: done
        elif _done(policy, index, decision, legacy, registry, state.stage_elapsed_s):
            action, percent = "complete", current
        else:
            return None  # hold: nothing to record
        event = {
            "action": action,
            "stage_index": index,
            "from_percent": current,
            "percent": percent,
            "stage_elapsed_s": round(state.stage_elapsed_s, 3),
            "calls": {"legacy": legacy.calls, "registry": registry.calls},
            "decision": decision.to_dict(),
            "by": self.replica,
        }
        if not self._apply(state, action, percent, event):
            return None  # another process applied this decision (or the guard changed)
        _announce(event, self.tracer)
        with contextlib.suppress(Exception):
            self.read_flags()
            self.refresh()
        return event

    def read_flags(self) -> None:
        """Make this process see a flag change it just wrote (others see it within a second)."""
        self.flags.read()

    # -- recording -------------------------------------------------------------------------------

    @abstractmethod
    def push(self, run_id: str, batch: _Batch) -> None:
        """Add a batch of this process's calls to the current stage of run `run_id` (dropped if
        that run is no longer running)."""

    @abstractmethod
    def lookup(self, request_id: str) -> tuple[str, int, PathName] | None:
        """The run, stage and path a recent call was recorded under."""

    @abstractmethod
    def add_counters(
        self, run_id: str, stage_index: int, path: PathName, increments: Mapping[str, float]
    ) -> None:
        """Add feedback counters to one stage and path."""

    def flush(self) -> None:
        """Push what this process recorded and the store does not have yet."""
        recorder = self.recording
        if recorder is not None:
            recorder.flush()

    def add_feedback(self, request_id: str, name: str, value: float) -> bool:
        """Store a user metric with the call `request_id` (synchronous code): True when the call
        is known (made under a guard, within `REQUEST_TTL_S`), False otherwise (nothing stored)."""
        increments = feedback_increments(request_id, name, value)
        if self._queued(request_id, increments):
            return True
        return self._feedback_sync(request_id, increments)

    async def add_feedback_async(self, request_id: str, name: str, value: float) -> bool:
        """`add_feedback` for the event loop: one script call, batched with the others of the
        same loop turn, never blocking the loop."""
        increments = feedback_increments(request_id, name, value)
        if self._queued(request_id, increments):
            return True
        return await self._feedback_async(request_id, increments)

    def _queued(self, request_id: str, increments: dict[str, float]) -> bool:
        """A call of this process not yet in the store: its feedback follows it in the next batch."""
        recorder = self.recording
        return recorder is not None and recorder.queue_feedback(request_id, increments)

    def _feedback_sync(self, request_id: str, increments: dict[str, float]) -> bool:
        found = self.lookup(request_id)
        if found is None:
            return False
        self.add_counters(*found, increments)
        return True

    async def _feedback_async(self, request_id: str, increments: dict[str, float]) -> bool:
        return self._feedback_sync(request_id, increments)  # in memory: no I/O

    def _known(self, state: GuardState) -> None:
        """Follow the guard read from the store: a recorder while it runs, none otherwise."""
        recorder = self.recording
        if state.active:
            if recorder is None or recorder.run_id != state.run_id:
                from .recorder import GuardRecorder

                if recorder is not None:
                    with contextlib.suppress(Exception):
                        recorder.flush()
                self.recording = GuardRecorder(self, state.run_id)
        elif recorder is not None:
            self.recording = None
            with contextlib.suppress(Exception):
                recorder.flush()

    def refresh(self) -> GuardState:
        state = self.read()
        self._known(state)
        return state

    def close(self) -> None:  # noqa: B027 - optional hook
        """Push what is pending."""


def _done(
    policy: GuardPolicy,
    index: int,
    decision: Decision,
    legacy: PathSummary,
    registry: PathSummary,
    elapsed_s: float,
) -> bool:
    """The last stage (100 % in the default policy) is finished like any other: every metric
    shown not worse with the stage's minimum calls and time; the guard then completes (it stops
    recording), the rollout staying at the last stage's share."""
    return (
        policy.is_last(index)
        and bool(decision.figures)
        and all(figure.verdict == "not worse" for figure in decision.figures)
        and min(legacy.calls, registry.calls) >= policy.stage_min_calls(index)
        and elapsed_s >= policy.stage_min_seconds(index)
    )


def _hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0][:32] or "host"


def _announce(event: Mapping[str, Any], tracer: Any) -> None:
    """The log line and the span event of an applied decision (the history has the figures)."""
    figures = event.get("decision", {}).get("figures") or []
    summary = "; ".join(f"{f.get('metric')} {f.get('verdict')}" for f in figures if isinstance(f, Mapping))
    action = event["action"]
    target = "kill switch" if action == "rollback" else f"{event['percent']:g} %"
    log = logger.warning if action == "rollback" else logger.info
    log(
        "guarded rollout: %s at stage %d (%g %%) -> %s [%s] (calls legacy=%s registry=%s)",
        action,
        event["stage_index"] + 1,  # people count stages from 1, as `status` and `history` do
        event["from_percent"],
        target,
        summary,
        event["calls"]["legacy"],
        event["calls"]["registry"],
    )
    try:
        if tracer is None:
            from opentelemetry import trace

            tracer = trace.get_tracer("lucky_litellm")
        with tracer.start_as_current_span("lucky.guard.decision") as span:
            attributes: dict[str, Any] = {
                "lucky.guard.action": action,
                "lucky.guard.stage_index": int(event["stage_index"]),
                "lucky.guard.from_percent": float(event["from_percent"]),
                "lucky.guard.calls.legacy": int(event["calls"]["legacy"]),
                "lucky.guard.calls.registry": int(event["calls"]["registry"]),
                "lucky.guard.figures": json.dumps(figures),
            }
            if event.get("percent") is not None:
                attributes["lucky.guard.percent"] = float(event["percent"])
            span.set_attributes(attributes)
            span.add_event(f"lucky.guard.{action}", attributes)
    except Exception:  # telemetry must never stop a decision
        logger.debug("could not emit the guard decision span", exc_info=True)


# -- in this process -----------------------------------------------------------------------------


class MemoryGuardStore(GuardStore):
    """The guard of this process only (no other process contributes or obeys)."""

    def __init__(self, flags: FlagStore, *, evaluate_every_s: float = MEMORY_EVALUATE_EVERY_S) -> None:
        super().__init__(flags, evaluate_every_s=evaluate_every_s)
        self._lock = threading.RLock()
        self._state = GuardState()
        self._counters: dict[tuple[str, int, str], dict[str, float]] = {}
        self._requests: OrderedDict[str, tuple[float, str, int, PathName]] = OrderedDict()
        self._history: list[dict[str, Any]] = []

    @property
    def location(self) -> str:
        return self.flags.location

    def read(self) -> GuardState:
        return replace(self._state, now=time.time())

    def counters(self, run_id: str, stage_index: int) -> dict[str, dict[str, float]]:
        with self._lock:
            return {path: dict(self._counters.get((run_id, stage_index, path), {})) for path in PATHS}

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._history)
        return events[-limit:] if limit else events

    def _event(self, event: dict[str, Any], state: GuardState, now: float) -> None:
        self._history.append({**event, "run": state.run_id, "version": state.version, "at": now})
        del self._history[:-HISTORY_MAX]

    def _start(self, run_id: str, policy: str, event: dict[str, Any]) -> GuardState:
        with self._lock:
            if self._state.active:
                raise GuardError(f"a guard is already running (run {self._state.run_id}): stop it first")
            now = time.time()
            self._state = GuardState(
                "running", run_id, policy, 0, (now,), now, None, self._state.version + 1, now
            )
            self._event(event, self._state, now)
            return self._state

    def _stop(self, event: dict[str, Any]) -> GuardState:
        with self._lock:
            if not self._state.active:
                raise GuardError("no guard is running")
            now = time.time()
            version = self._state.version + 1
            self._state = replace(self._state, status="stopped", ended_at=now, version=version)
            self._event(event, self._state, now)
            return self._state

    def _apply(
        self,
        state: GuardState,
        action: Action,
        percent: float | None,
        event: dict[str, Any],
    ) -> bool:
        with self._lock:
            current = self._state
            if not current.active or current.version != state.version:
                return False
            now = time.time()
            if action in ("advance", "finish"):
                assert percent is not None
                self.flags.set_percent(percent)
                self._state = replace(
                    current,
                    status="completed" if action == "finish" else "running",
                    stage_index=current.stage_index + 1,
                    stage_starts=(*current.stage_starts, now),
                    ended_at=now if action == "finish" else None,
                    version=current.version + 1,
                )
            else:
                if action == "rollback":
                    self.flags.set_enabled(False)
                status: GuardStatus = "rolled_back" if action == "rollback" else "completed"
                self._state = replace(current, status=status, ended_at=now, version=current.version + 1)
            self._event(event, self._state, now)
            self._known(self._state)
            return True

    def read_flags(self) -> None:
        pass  # the flags were written in this process

    def push(self, run_id: str, batch: _Batch) -> None:
        with self._lock:
            state = self._state
            if not state.active or state.run_id != run_id:
                return
            stage = state.stage_index
            for path, increments in batch.counters.items():
                counters = self._counters.setdefault((run_id, stage, path), {})
                for name, value in increments.items():
                    counters[name] = counters.get(name, 0.0) + value
            now = time.monotonic()
            requests = self._requests
            for request_id, path in batch.requests:
                requests[request_id] = (now + REQUEST_TTL_S, run_id, stage, path)  # type: ignore[assignment]
                requests.move_to_end(request_id)
            while len(requests) > MEMORY_REQUESTS_MAX:
                requests.popitem(last=False)
            for request_id, increments in batch.feedback:
                self._feedback_sync(request_id, increments)

    def lookup(self, request_id: str) -> tuple[str, int, PathName] | None:
        with self._lock:
            found = self._requests.get(request_id)
            if found is None:
                return None
            expires, run_id, stage, path = found
            if expires < time.monotonic():
                del self._requests[request_id]
                return None
            return run_id, stage, path

    def add_counters(
        self, run_id: str, stage_index: int, path: PathName, increments: Mapping[str, float]
    ) -> None:
        with self._lock:
            counters = self._counters.setdefault((run_id, stage_index, path), {})
            for name, value in increments.items():
                counters[name] = counters.get(name, 0.0) + value


# -- Redis ---------------------------------------------------------------------------------------

_TIME = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
"""

_EVENT = """
local function push_event(raw, version, t)
  local event = cjson.decode(raw)
  event['version'] = version
  event['at'] = t
  event['run'] = redis.call('HGET', KEYS[1], 'run')
  redis.call('RPUSH', KEYS[2], cjson.encode(event))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[#ARGV]), -1)
end
"""

# KEYS: guard hash, history. ARGV: run id, policy JSON, start event, history max.
_START = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    + _TIME
    + _EVENT
    + """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  return {0, redis.call('HGET', KEYS[1], 'run')}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HDEL', KEYS[1], 'ended_at')
redis.call('HSET', KEYS[1], 'status', 'running', 'run', ARGV[1], 'policy', ARGV[2], 'stage', '0',
           'starts', cjson.encode({t}), 'started_at', tostring(t))
push_event(ARGV[3], version, t)
return {1, ARGV[1]}
"""
)

# KEYS: guard hash, history. ARGV: stop event, history max.
_STOP = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    + _TIME
    + _EVENT
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'status', 'stopped', 'ended_at', tostring(t))
push_event(ARGV[1], version, t)
return 1
"""
)

# The compare-and-set of a decision. KEYS: guard hash, history, flags hash. ARGV: expected
# version, action, new percent, salt (for flags lost meanwhile), event, history max.
_APPLY = (
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    + _TIME
    + _EVENT
    + """
local status, version = unpack(redis.call('HMGET', KEYS[1], 'status', 'version'))
if status ~= 'running' or version ~= ARGV[1] then return 0 end
local action = ARGV[2]
local function flags(field, value)
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[3], 'enabled', '1', 'percent', '0.0', 'salt', ARGV[4], 'version', '0')
  end
  redis.call('HSET', KEYS[3], field, value, 'seeded', '0')
  redis.call('HINCRBY', KEYS[3], 'version', 1)
end
if action == 'advance' or action == 'finish' then
  local starts = cjson.decode(redis.call('HGET', KEYS[1], 'starts'))
  starts[#starts + 1] = t
  redis.call('HSET', KEYS[1], 'stage', tostring(tonumber(redis.call('HGET', KEYS[1], 'stage')) + 1),
             'starts', cjson.encode(starts))
  flags('percent', ARGV[3])
  if action == 'finish' then
    redis.call('HSET', KEYS[1], 'status', 'completed', 'ended_at', tostring(t))
  end
elseif action == 'rollback' then
  flags('enabled', '0')
  redis.call('HSET', KEYS[1], 'status', 'rolled_back', 'ended_at', tostring(t))
elseif action == 'complete' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'ended_at', tostring(t))
else
  return redis.error_reply('unknown guard action ' .. action)
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
push_event(ARGV[5], version, t)
return version
"""
)

# A batch of calls. KEYS: guard hash. ARGV: run id, key prefix, request TTL, summary TTL, the
# batch as JSON ({"counters": {path: {field: "value"}}, "requests": [[id, path], ...]}), batch id.
# Lands in the stage current now; dropped (-1) when that run is not running any more, and (-2)
# when a batch of that id landed already (its sender saw a timeout, not the reply, and resent it).
_PUSH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then
  return -1
end
if not redis.call('SET', ARGV[2] .. 'batch:' .. ARGV[6], '1', 'NX', 'EX', ARGV[4]) then
  return -2
end
local stage = redis.call('HGET', KEYS[1], 'stage')
local batch = cjson.decode(ARGV[5])
for path, counters in pairs(batch['counters']) do
  local key = ARGV[2] .. 'sum:' .. ARGV[1] .. ':' .. stage .. ':' .. path
  for name, value in pairs(counters) do redis.call('HINCRBYFLOAT', key, name, value) end
  redis.call('EXPIRE', key, ARGV[4])
end
for _, request in ipairs(batch['requests']) do
  local where = ARGV[1] .. '|' .. stage .. '|' .. request[2]
  redis.call('SET', ARGV[2] .. 'req:' .. request[1], where, 'EX', ARGV[3])
end
for _, item in ipairs(batch['feedback']) do
  local where = redis.call('GET', ARGV[2] .. 'req:' .. item[1])
  if where then
    local run, at, path = string.match(where, '^([^|]*)|([^|]*)|(.*)$')
    local key = ARGV[2] .. 'sum:' .. run .. ':' .. at .. ':' .. path
    for name, value in pairs(item[2]) do redis.call('HINCRBYFLOAT', key, name, value) end
  end
end
return tonumber(stage)
"""

# One feedback value. KEYS: the call's request key. ARGV: key prefix, then counter, increment...
# Returns 1 when the call is known (the counters were added to its run, stage and path), else 0.
_FEEDBACK = """
local where = redis.call('GET', KEYS[1])
if not where then return 0 end
local run, stage, path = string.match(where, '^([^|]*)|([^|]*)|(.*)$')
local key = ARGV[1] .. 'sum:' .. run .. ':' .. stage .. ':' .. path
for i = 2, #ARGV, 2 do redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1]) end
return 1
"""


class RedisGuardStore(GuardStore):
    """The guard shared by every process using the same Redis URL and prefix. Its syncer step
    (on the connection's ticker, never the request path) follows the guard's status, pushes
    this process's calls and, while the process serves requests, runs the evaluator."""

    shared = True

    def __init__(
        self,
        connection: RedisConnection,
        flags: FlagStore,
        *,
        evaluate_every_s: float = EVALUATE_EVERY_S,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__(flags, evaluate_every_s=evaluate_every_s)
        self._connection = connection
        base = f"{connection.prefix}guard"
        self._key = base
        self._history_key = f"{base}:history"
        self._base = f"{base}:"
        self._flags_key = f"{connection.prefix}flags"
        self._refresh_s = refresh_s
        self._read_at = float("-inf")
        self._evaluated_at = float("-inf")
        client = connection.sync_client
        self._start_script = client.register_script(_START)
        self._stop_script = client.register_script(_STOP)
        self._apply_script = client.register_script(_APPLY)
        self._push_script = client.register_script(_PUSH)
        self._feedback_script = client.register_script(_FEEDBACK)
        with contextlib.suppress(Exception):  # the first async feedback needs no NOSCRIPT round trip
            client.script_load(_FEEDBACK)
        connection.on_tick(self._tick)
        connection.on_fork(self._forked)
        with contextlib.suppress(Exception):
            self.refresh()  # a process started mid-rollout records its first calls

    def __repr__(self) -> str:
        return f"RedisGuardStore({self._connection.location})"

    @property
    def location(self) -> str:
        return self._connection.location

    def _forked(self) -> None:
        self.recording = None  # the parent's batch is the parent's; the child reads the guard again
        self._read_at = float("-inf")

    def _call(self, operation: Any) -> Any:
        return self._connection.call_sync(operation)

    def read(self) -> GuardState:
        def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(self._key)
            pipe.time()
            return pipe.execute()

        raw, (seconds, micros) = self._call(run)
        return _parse_state(raw, seconds + micros / 1e6)

    def counters(self, run_id: str, stage_index: int) -> dict[str, dict[str, float]]:
        def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for path in PATHS:
                pipe.hgetall(f"{self._base}sum:{run_id}:{stage_index}:{path}")
            return pipe.execute()

        replies = self._call(run)
        return {
            path: {name: float(value) for name, value in reply.items()}
            for path, reply in zip(PATHS, replies, strict=True)
        }

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        raw = self._call(lambda c: c.lrange(self._history_key, -limit if limit else 0, -1))
        events = []
        for item in raw:
            with contextlib.suppress(ValueError):
                events.append(json.loads(item))
        return events

    def _start(self, run_id: str, policy: str, event: dict[str, Any]) -> GuardState:
        keys = [self._key, self._history_key]
        args: list[str | int] = [run_id, policy, json.dumps(event), HISTORY_MAX]
        ok, running = self._call(lambda c: self._start_script(keys=keys, args=args, client=c))
        if not int(ok):
            raise GuardError(f"a guard is already running (run {running}): stop it first")
        return self.read()

    def _stop(self, event: dict[str, Any]) -> GuardState:
        keys = [self._key, self._history_key]
        args: list[str | int] = [json.dumps(event), HISTORY_MAX]
        if not int(self._call(lambda c: self._stop_script(keys=keys, args=args, client=c))):
            raise GuardError("no guard is running")
        return self.read()

    def _apply(
        self,
        state: GuardState,
        action: Action,
        percent: float | None,
        event: dict[str, Any],
    ) -> bool:
        keys = [self._key, self._history_key, self._flags_key]
        salt = self.flags.current().salt
        args = [state.version, action, repr(float(percent or 0.0)), salt, json.dumps(event), HISTORY_MAX]
        applied = int(self._call(lambda c: self._apply_script(keys=keys, args=args, client=c)))
        if applied:
            self._read_at = float("-inf")  # follow the new state at the next tick
        return bool(applied)

    def push(self, run_id: str, batch: _Batch) -> None:
        payload = {
            "counters": {path: _strings(c) for path, c in batch.counters.items()},
            "requests": [list(r) for r in batch.requests],
            "feedback": [[request_id, _strings(c)] for request_id, c in batch.feedback],
        }
        args: list[str | int] = [
            run_id,
            self._base,
            int(REQUEST_TTL_S),
            int(SUMMARY_TTL_S),
            json.dumps(payload),
            batch.id,
        ]
        self._call(lambda c: self._push_script(keys=[self._key], args=args, client=c))

    def lookup(self, request_id: str) -> tuple[str, int, PathName] | None:
        raw = self._call(lambda c: c.get(f"{self._base}req:{request_id}"))
        if not raw:
            return None
        run_id, stage, path = str(raw).split("|", 2)
        if path not in PATHS:
            return None
        return run_id, int(stage), "legacy" if path == "legacy" else "registry"

    def add_counters(
        self, run_id: str, stage_index: int, path: PathName, increments: Mapping[str, float]
    ) -> None:
        key = f"{self._base}sum:{run_id}:{stage_index}:{path}"

        def run(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            for name, value in increments.items():
                pipe.hincrbyfloat(key, name, value)
            pipe.execute()

        self._call(run)

    def _feedback_args(self, request_id: str, increments: Mapping[str, float]) -> tuple[list[str], list[str]]:
        args = [self._base]
        for name, value in increments.items():
            args += [name, repr(float(value))]
        return [f"{self._base}req:{request_id}"], args

    def _feedback_sync(self, request_id: str, increments: dict[str, float]) -> bool:
        keys, args = self._feedback_args(request_id, increments)
        return bool(int(self._call(lambda c: self._feedback_script(keys=keys, args=args, client=c))))

    async def _feedback_async(self, request_id: str, increments: dict[str, float]) -> bool:
        keys, args = self._feedback_args(request_id, increments)
        reply = await self._connection.call(lambda client: client.eval(_FEEDBACK, keys, list(args)))
        return bool(int(reply))

    # -- the syncer step ---------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if not self._connection.serving:
            return  # a CLI process neither records nor decides
        if now - self._read_at >= self._refresh_s:
            self._read_at = now
            self.refresh()
        recorder = self.recording
        if recorder is None:
            return
        recorder.flush()
        if now - self._evaluated_at >= self.evaluate_every_s:
            self._evaluated_at = now
            try:
                self.evaluate()
            except StateUnavailableError:
                raise
            except Exception:
                logger.exception("guarded rollout: the evaluation failed (the guard holds)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush()


def _strings(counters: Mapping[str, float]) -> dict[str, str]:
    """Increments as exact decimal strings (a Lua number would lose digits on the way)."""
    return {name: repr(float(value)) for name, value in counters.items()}


def _parse_state(raw: Mapping[str, str], now: float) -> GuardState:
    if not raw:
        return GuardState(now=now)
    try:
        status = raw.get("status", "idle")
        if status not in ("running", "rolled_back", "completed", "stopped"):
            status = "idle"
        ended = raw.get("ended_at")
        starts = json.loads(raw.get("starts", "[]"))
        return GuardState(
            status=status,  # type: ignore[arg-type]
            run_id=raw.get("run", ""),
            policy_json=raw.get("policy", ""),
            stage_index=int(raw.get("stage", "0")),
            stage_starts=tuple(float(s) for s in (starts if isinstance(starts, list) else [])),
            started_at=float(raw.get("started_at", "0")),
            ended_at=float(ended) if ended else None,
            version=int(raw.get("version", "0")),
            now=now,
        )
    except (ValueError, TypeError) as exc:
        raise StateUnavailableError(f"unreadable guard state in Redis: {dict(raw)!r:.200} ({exc})") from None


def batch_of(
    counters: Mapping[str, Mapping[str, float]],
    requests: Sequence[tuple[str, str]],
    feedback: Sequence[tuple[str, dict[str, float]]] = (),
) -> _Batch:
    return _Batch({p: dict(c) for p, c in counters.items()}, list(requests), list(feedback))
