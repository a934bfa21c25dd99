"""Rollout bucketing: stable, uniform, monotone, and the order of the rules."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from lucky_litellm.bucketing import RolloutError, RolloutPolicy, bucket_of, in_rollout

USERS = [f"user-{i}" for i in range(10_000)]


def test_a_bucket_never_changes_between_releases():
    """Pinned values: a change of hash would silently move users between paths."""
    assert [bucket_of("user-1", "lucky"), bucket_of("user-2", "lucky"), bucket_of("user-1", "other")] == [
        2861,
        9737,
        6230,
    ]


def test_ten_thousand_users_at_25_percent_land_within_one_and_a_half_points():
    share = sum(in_rollout(user, 25, "lucky") for user in USERS) / len(USERS) * 100
    assert 23.5 <= share <= 26.5


def test_raising_the_percentage_only_adds_users():
    at_10 = {user for user in USERS if in_rollout(user, 10, "lucky")}
    at_50 = {user for user in USERS if in_rollout(user, 50, "lucky")}
    assert at_10 < at_50
    assert len(at_10) > 0


def test_the_same_user_gets_the_same_answer_in_another_process():
    code = "from lucky_litellm.bucketing import bucket_of; print(bucket_of('user-42', 'lucky'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(other) == bucket_of("user-42", "lucky")


def test_a_different_salt_reshuffles_users():
    assert sum(bucket_of(u, "a") == bucket_of(u, "b") for u in USERS[:1000]) < 10


def test_the_kill_switch_overrides_test_users():
    policy = RolloutPolicy(enabled=False, percent=100, test_users=frozenset({"researcher-1"}))
    decision = policy.decide("researcher-1")
    assert (decision.path, decision.reason) == ("legacy", "killed")


def test_test_users_take_the_registry_path_at_zero_percent():
    decision = RolloutPolicy(percent=0, test_users=frozenset({"researcher-1"})).decide("researcher-1")
    assert (decision.path, decision.reason) == ("registry", "test_user")


@pytest.mark.parametrize(("percent", "path"), [(0, "legacy"), (99.99, "legacy"), (100, "registry")])
def test_anonymous_calls_take_the_registry_path_only_at_100_percent(percent, path):
    assert RolloutPolicy(percent=percent).decide(None) == RolloutPolicy(percent=percent).decide("")
    assert RolloutPolicy(percent=percent).decide(None).path == path


@pytest.mark.parametrize(
    "bad", [-0.1, 100.01, float("nan"), float("inf"), True, "25", None, Decimal("sNaN"), Decimal("-1")]
)
def test_invalid_percentages_are_refused_with_the_value(bad):
    with pytest.raises(RolloutError, match="rollout percent"):
        RolloutPolicy.check_percent(bad)


@pytest.mark.parametrize("value", [0, 12.5, Decimal("12.5"), 100])
def test_any_real_number_from_0_to_100_is_a_percentage(value):
    assert RolloutPolicy.check_percent(value) == float(value)


def test_decimal_percentages_are_allowed_and_the_policy_reads_well():
    policy = RolloutPolicy(percent=12.5, test_users=frozenset({"a", "b"}))
    assert repr(policy) == "RolloutPolicy(enabled, percent=12.5, test_users=2, salt='lucky')"


def test_a_lone_surrogate_has_a_bucket_and_valid_ids_keep_theirs():
    """Hashing a safe encoding (surrogatepass) must not move anyone already bucketed."""
    import hashlib

    assert 0 <= bucket_of("user-\ud800", "lucky") < 10_000
    plain = hashlib.blake2b("lucky:user-é".encode(), digest_size=8).digest()
    assert bucket_of("user-é", "lucky") == int.from_bytes(plain, "big") % 10_000
