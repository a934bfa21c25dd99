"""Per-model circuits shared through Redis, so every process and proxy replica skips a dead model.

Each model has a hash ``<prefix>health:m:<model>`` (open flag, when it half-opens, failures in a
row, the reason, and the error-rate window as per-bucket counters ``o:<n>``/``f:<n>``), listed in
the set ``<prefix>health:models``. Times are Redis's own clock (``TIME``), handed to processes as
durations, so clocks of different machines never need to agree.

The request path never waits for this store to record anything: outcomes are counted in the
process (`health.Circuits`) and the syncer thread pushes them every 0.1 s in one Lua call, which
applies every model's counts, decides each circuit, and returns every model's circuit; the
process then takes the fleet's view. The one awaited call is the half-open probe slot (``SET NX
PX``), asked for once per cooldown and remembered when refused, so a circuit lets exactly one
probe through across the fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import StateUnavailableError
from ..health.circuit import BUCKETS, Policy
from .redis import RedisConnection

if TYPE_CHECKING:
    from ..health.circuits import Circuits

__all__ = ["RedisHealthStore", "SharedCircuit"]

logger = logging.getLogger("lucky_litellm.state")

_KEEP_S = 86_400
"""A model nobody called for a day is forgotten (its hash expires)."""

# KEYS[1]: the set of models, KEYS[2]: prefix of the model hashes, KEYS[3]: prefix of probe keys.
# ARGV[1..8]: failures in a row, error rate (-1: off), min calls, bucket ms, buckets, cooldown ms,
# this replica's id, key ttl s; then 9 values per model pushed: model, ok, fail, trailing failures
# (after the batch's last success), had a success (1/0), a probe succeeded (1/0), Retry-After ms
# (-1: none), probe done (1/0), last error type.
# Returns {now ms, {model, opened, open for ms, failures in a row, calls, failures, reason,
# last failure ms ago (-1: never), opens, probe ttl ms, last error}...}.
_SYNC = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes (Redis < 5)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local threshold, rate, min_calls = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket_ms, buckets, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local replica, ttl = ARGV[7], tonumber(ARGV[8])
local cur = math.floor(now / bucket_ms)

local function load(key)
  local raw = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end

local function window(key, h, clear)
  local ok, fail, stale = 0, 0, {}
  for field, value in pairs(h) do
    local kind, n = string.match(field, '^([of]):(%d+)$')
    if kind then
      if clear or tonumber(n) <= cur - buckets then table.insert(stale, field)
      elseif kind == 'o' then ok = ok + tonumber(value)
      else fail = fail + tonumber(value) end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return ok, fail
end

local i = 9
while i + 8 <= #ARGV do
  local model, ok, fail = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local trailing, had_ok, probe_ok = tonumber(ARGV[i + 3]), ARGV[i + 4] == '1', ARGV[i + 5] == '1'
  local retry_after, probe_done, err = tonumber(ARGV[i + 6]), ARGV[i + 7] == '1', ARGV[i + 8]
  i = i + 9
  local key = KEYS[2] .. model
  redis.call('SADD', KEYS[1], model)
  if ok > 0 then redis.call('HINCRBY', key, 'o:' .. cur, ok) end
  if fail > 0 then
    redis.call('HINCRBY', key, 'f:' .. cur, fail)
    redis.call('HSET', key, 'last_failure', now, 'last_error', err)
  end
  local h = load(key)
  local opened = h['opened'] == '1'
  local open_until = tonumber(h['open_until'] or '0')
  local consecutive = tonumber(h['consecutive'] or '0')
  local opens = tonumber(h['opens'] or '0')
  local reason = h['reason'] or ''
  if had_ok then consecutive = trailing else consecutive = consecutive + fail end
  local wok, wfail = window(key, h, false)
  local function open(untl, why)
    if not opened then opens = opens + 1 end
    opened, open_until, reason = true, untl, why
  end
  if retry_after >= 0 then
    local untl = now + retry_after
    if opened and open_until > untl then untl = open_until end
    open(untl, 'rate limited (429, Retry-After ' .. string.format('%g', retry_after / 1000) .. ' s)')
  elseif opened then
    if now >= open_until or probe_ok then
      if trailing > 0 then
        open(now + cooldown, 'probe failed (' .. err .. ')')
      elseif had_ok then
        opened, reason, consecutive = false, '', 0
        window(key, load(key), true)
      end
    end
  elseif fail > 0 then
    if consecutive >= threshold then
      open(now + cooldown, consecutive .. ' failures in a row (last: ' .. err .. ')')
    elseif rate >= 0 and wok + wfail >= min_calls and wfail >= rate * (wok + wfail) then
      open(now + cooldown, 'error rate ' .. math.floor(100 * wfail / (wok + wfail) + 0.5) .. '% over '
        .. (wok + wfail) .. ' calls (last: ' .. err .. ')')
    end
  end
  redis.call('HSET', key, 'opened', opened and '1' or '0', 'open_until', open_until,
             'consecutive', consecutive, 'opens', opens, 'reason', reason)
  redis.call('EXPIRE', key, ttl)
  local probe = KEYS[3] .. model
  if probe_done and redis.call('GET', probe) == replica then redis.call('DEL', probe) end
end

local out = {now}
for _, model in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = KEYS[2] .. model
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', KEYS[1], model)
  else
    local h = load(key)
    local wok, wfail = window(key, h, false)
    local open_for = 0
    if h['opened'] == '1' then open_for = tonumber(h['open_until'] or '0') - now end
    local last = -1
    if h['last_failure'] then last = now - tonumber(h['last_failure']) end
    table.insert(out, {model, h['opened'] or '0', open_for, tonumber(h['consecutive'] or '0'),
                       wok + wfail, wfail, h['reason'] or '', last, tonumber(h['opens'] or '0'),
                       redis.call('PTTL', KEYS[3] .. model), h['last_error'] or ''})
  end
end
return out
"""

# KEYS[1]: the probe key of a model. ARGV: this replica's id, ttl ms.
# Returns -1 when the probe slot was taken, else how long (ms) another replica still holds it.
_PROBE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then return 0 end
return left
"""


@dataclass(frozen=True)
class SharedCircuit:
    """One model's circuit as Redis holds it, with durations relative to the read."""

    model: str
    opened: bool
    open_for_s: float
    """Until an open circuit half-opens (<= 0: half-open already)."""
    consecutive: int
    calls: int
    failures: int
    reason: str
    last_failure_ago_s: float | None
    opens: int
    probe_held_s: float | None
    """How long another probe still holds the slot (None: free)."""
    last_error: str

    @property
    def state(self) -> str:
        if not self.opened:
            return "closed"
        return "open" if self.open_for_s > 0 else "half-open"


class RedisHealthStore:
    """The fleet's circuits in Redis: a push-and-read per syncer tick, and the probe slot."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        prefix = connection.prefix
        self._keys = [f"{prefix}health:models", f"{prefix}health:m:", f"{prefix}health:probe:"]
        self._probe_prefix = f"{prefix}health:probe:"
        self._sync = connection.sync_client.register_script(_SYNC)
        self._circuits: Circuits | None = None

    def __repr__(self) -> str:
        return f"RedisHealthStore({self._connection.location})"

    @property
    def location(self) -> str:
        return self._connection.location

    def attach(self, circuits: Circuits) -> None:
        """Keep `circuits` in step with the fleet from the syncer thread (every tick, once used)."""
        self._circuits = circuits
        self._connection.on_tick(self._tick)

    # -- the request path (half-open only) ---------------------------------------------------------

    async def take_probe(self, model: str, hold_s: float) -> float | None:
        """Take the fleet's probe slot of `model` for at most `hold_s`: None when taken, else how
        long another process still holds it. `StateUnavailableError` during an outage."""
        key = self._probe_prefix + model
        args = [self._connection.replica_id, max(int(hold_s * 1000), 1)]
        reply = await self._connection.call(lambda client: client.eval(_PROBE, [key], args))
        left = int(reply)
        return None if left < 0 else left / 1000

    # -- the syncer ----------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        circuits = self._circuits
        if circuits is None or not circuits.active:
            return
        taken = circuits.take_pending()
        try:
            circuits_read = self.sync(circuits.policy, [(breaker.model, counts) for breaker, counts in taken])
        except BaseException:
            circuits.put_back(taken)
            raise
        circuits.apply_shared(circuits_read, time.monotonic())

    def sync(self, policy: Policy, pushed: Sequence[tuple[str, tuple[Any, ...]]] = ()) -> list[SharedCircuit]:
        """Apply `pushed` counts (model, (ok, fail, trailing, had_ok, probe_ok, retry_after_s,
        probe_done, error)) and read every model's circuit (sync client: syncer thread, CLI)."""
        args: list[Any] = [
            policy.consecutive_failures,
            -1 if policy.error_rate is None else policy.error_rate,
            policy.min_calls,
            max(int(policy.bucket_s * 1000), 1),
            BUCKETS,
            int(policy.cooldown_s * 1000),
            self._connection.replica_id,
            _KEEP_S,
        ]
        for model, (ok, fail, trailing, had_ok, probe_ok, retry_after, probe_done, error) in pushed:
            retry_ms = -1 if retry_after < 0 else int(min(retry_after, policy.max_retry_after_s) * 1000)
            args += [model, ok, fail, trailing, int(had_ok), int(probe_ok), retry_ms, int(probe_done), error]
        try:
            reply = self._connection.call_sync(lambda c: self._sync(keys=self._keys, args=args, client=c))
        except StateUnavailableError:
            raise
        except self._connection.outage_errors:
            raise
        except Exception as exc:  # e.g. a key of the wrong type: Redis answered, but not with circuits
            raise StateUnavailableError(f"could not use the circuits in Redis ({exc})") from None
        return [_parse(row) for row in reply[1:]]

    def read(self, policy: Policy) -> list[SharedCircuit]:
        """Every model's circuit now (the CLI); raises `StateUnavailableError`."""
        return sorted(self.sync(policy), key=lambda circuit: circuit.model)

    def reset(self) -> None:
        """Forget every model's circuit (tests, operators)."""

        def run(client: Any) -> None:
            keys = list(client.scan_iter(match=self._keys[1] + "*"))
            keys += list(client.scan_iter(match=self._probe_prefix + "*"))
            client.delete(self._keys[0], *keys)

        self._connection.call_sync(run)


def _parse(row: Sequence[Any]) -> SharedCircuit:
    model, opened, open_for, consecutive, calls, failures, reason, last, opens, probe_ttl, error = row
    return SharedCircuit(
        model=str(model),
        opened=str(opened) == "1",
        open_for_s=int(open_for) / 1000,
        consecutive=int(consecutive),
        calls=int(calls),
        failures=int(failures),
        reason=str(reason),
        last_failure_ago_s=None if int(last) < 0 else int(last) / 1000,
        opens=int(opens),
        probe_held_s=None if int(probe_ttl) < 0 else int(probe_ttl) / 1000,
        last_error=str(error),
    )
