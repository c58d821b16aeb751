"""The pre-auth admission logic without sockets: per-source caps, IPv6 /64 sources, random
early drop with an injected RNG, penalties that expire on an injected clock, and the
per-source request rate."""

from __future__ import annotations

import pytest

from opsconsole import config
from opsconsole.auth import sources
from opsconsole.auth.sources import RequestRate, source_key
from opsconsole.errors import ConfigError
from opsconsole.transport import admission
from opsconsole.transport.admission import Admission, EarlyDrop, Penalties
from testkit.support import FakeClock

DEFAULT_EARLY = EarlyDrop(0.5, 0.3, 1.0)  # the default "50:30:100"


class FixedRng:
    """An RNG that returns what the test says."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def _door(
    clock: FakeClock,
    *,
    cap: int = 64,
    per_source: int = 8,
    rng: FixedRng | None = None,
    penalties: Penalties | None = None,
    early: EarlyDrop = DEFAULT_EARLY,
) -> Admission:
    return Admission(
        "http",
        cap=cap,
        per_source=per_source,
        early_drop=early,
        penalties=penalties or Penalties(min_seconds=15, max_seconds=600, clock=clock),
        rng=rng or FixedRng(0.99),
    )


# -- sources -------------------------------------------------------------------------------


def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4 mapped into an IPv6 socket
    assert source_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("unknown") == "unknown"


# -- the per-source cap ----------------------------------------------------------------------


def test_one_source_cannot_take_more_than_its_share(clock: FakeClock) -> None:
    door = _door(clock, per_source=3)
    keys = [object() for _ in range(4)]
    assert [door.admit("127.0.0.2", k).admitted for k in keys] == [True, True, True, False]
    assert door.admit("127.0.0.2", object()).cause == "source_cap"
    assert door.admit("127.0.0.1", object()).admitted  # another source is not affected
    assert door.pending("127.0.0.2") == 3 and door.pending() == 4
    door.release(keys[0])
    assert door.admit("127.0.0.2", object()).admitted
    assert dict(door.stats().refused) == {"source_cap": 2}


def test_an_authenticated_connection_frees_its_slot(clock: FakeClock) -> None:
    door = _door(clock, per_source=1)
    first = object()
    assert door.admit("10.0.0.1", first).admitted
    assert not door.admit("10.0.0.1", object()).admitted
    door.authenticated(first)
    assert not door.is_pending(first)
    assert door.admit("10.0.0.1", object()).admitted
    door.release(first, "noauth")  # closing after authenticating costs nothing
    assert door.stats().penalised == 0


def test_an_ipv6_slash_64_is_one_source(clock: FakeClock) -> None:
    door = _door(clock, per_source=2)
    assert door.admit("2001:db8:0:1::a", object()).admitted
    assert door.admit("2001:db8:0:1::b", object()).admitted
    refused = door.admit("2001:db8:0:1:dead:beef:0:1", object())
    assert (refused.admitted, refused.source, refused.cause) == (False, "2001:db8:0:1::/64", "source_cap")
    assert door.admit("2001:db8:0:2::a", object()).admitted  # the next /64 is someone else


def test_the_global_cap_holds(clock: FakeClock) -> None:
    door = _door(clock, cap=4, per_source=1, early=EarlyDrop(1.0, 0.0, 1.0))
    assert all(door.admit(f"10.0.0.{i}", object()).admitted for i in range(4))
    assert door.admit("10.0.0.9", object()).cause == "cap"


# -- random early drop -----------------------------------------------------------------------


def test_random_early_drop_rises_from_rate_to_certain(clock: FakeClock) -> None:
    rng = FixedRng(0.0)
    door = _door(clock, cap=10, per_source=2, rng=rng)  # starts at 5, certain at 10
    for i in range(5):
        assert door.admit(f"10.0.0.{i}", object()).admitted
    assert rng.calls == 0  # below the start no coin is tossed
    # at 5 pending the probability is 0.3: a draw of 0.29 drops, 0.31 admits
    rng.value = 0.29
    assert door.admit("10.0.1.1", object()).cause == "early_drop"
    rng.value = 0.31
    assert door.admit("10.0.1.1", object()).admitted
    # at 6 pending: 0.3 + 0.7 * 1/5 = 0.44
    rng.value = 0.43
    assert door.admit("10.0.1.2", object()).cause == "early_drop"
    rng.value = 0.45
    assert door.admit("10.0.1.2", object()).admitted
    rng.value = 0.999
    for i in range(3):
        assert door.admit(f"10.0.2.{i}", object()).admitted  # 7, 8, 9 pending: p < 1
    assert door.admit("10.0.3.1", object()).cause == "cap"
    assert dict(door.stats().refused) == {"cap": 1, "early_drop": 2}
    assert door.stats().penalised == 0  # being dropped at random is nobody's fault


def test_early_drop_never_starts_below_one_sources_share(clock: FakeClock) -> None:
    rng = FixedRng(0.0)  # would drop at any probability above 0
    door = _door(clock, cap=4, per_source=3, rng=rng)  # 50 % of 4 is 2, but one source may hold 3
    assert [door.admit("127.0.0.1", object()).admitted for _ in range(3)] == [True] * 3
    assert rng.calls == 0
    assert door.admit("127.0.0.2", object()).cause == "early_drop"


# -- penalties -------------------------------------------------------------------------------


def test_a_source_that_keeps_being_dropped_is_refused_until_its_penalty_expires(clock: FakeClock) -> None:
    door = _door(clock, per_source=1)
    assert door.admit("127.0.0.2", object()).admitted
    for _ in range(15):  # 1 s each: the 15th reaches penalty_min
        assert door.admit("127.0.0.2", object()).cause == "source_cap"
    assert door.admit("127.0.0.2", object()).cause == "penalty"
    assert door.admit("127.0.0.1", object()).admitted  # only that source
    assert door.stats().penalised == 1
    for _ in range(100):  # refusals during a penalty do not lengthen it
        assert door.admit("127.0.0.2", object()).cause == "penalty"
    clock.advance(14.9)
    assert door.admit("127.0.0.2", object()).cause == "penalty"
    clock.advance(0.2)
    assert door.stats().penalised == 0
    assert door.admit("127.0.0.2", object()).cause == "source_cap"  # its first connection is still open


def test_timeouts_and_silent_closes_build_up_a_penalty(clock: FakeClock) -> None:
    penalties = Penalties(min_seconds=15, max_seconds=600, clock=clock)
    door = _door(clock, penalties=penalties)
    first, second = object(), object()
    assert door.admit("10.1.1.1", first).admitted and door.admit("10.1.1.1", second).admitted
    door.release(first, "timeout")  # 10 s
    assert penalties.remaining("10.1.1.1") == 0  # below penalty_min: still welcome
    door.release(second, "timeout")  # 20 s
    assert penalties.remaining("10.1.1.1") == pytest.approx(20)
    assert door.admit("10.1.1.1", object()).cause == "penalty"
    door.release(first, "timeout")  # released twice: counted once
    assert penalties.remaining("10.1.1.1") == pytest.approx(20)
    clock.advance(20)
    assert door.admit("10.1.1.1", object()).admitted


def test_a_penalty_drains_and_is_capped(clock: FakeClock) -> None:
    penalties = Penalties(min_seconds=15, max_seconds=60, clock=clock)
    for _ in range(7):
        penalties.penalise("10.2.2.2", "noauth")  # 2 s each: 14 s
    assert penalties.remaining("10.2.2.2") == 0
    clock.advance(10)  # drained to 4 s
    for _ in range(5):
        penalties.penalise("10.2.2.2", "noauth")
    assert penalties.remaining("10.2.2.2") == 0  # 14 s again: never reached 15
    for _ in range(100):
        penalties.penalise("10.2.2.2", "timeout")
    assert penalties.remaining("10.2.2.2") == pytest.approx(60)  # penalty_max
    clock.advance(60)
    assert penalties.remaining("10.2.2.2") == 0


def test_penalties_off(clock: FakeClock) -> None:
    penalties = Penalties(min_seconds=0, max_seconds=0, clock=clock)
    for _ in range(100):
        penalties.penalise("10.3.3.3", "timeout")
    assert penalties.remaining("10.3.3.3") == 0 and penalties.blocked() == 0


def test_penalty_accounts_are_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "MAX_PENALISED", 3)
    penalties = Penalties(min_seconds=5, max_seconds=600, clock=clock)
    for i in range(10):
        penalties.penalise(f"10.4.0.{i}", "timeout")
    assert [penalties.remaining(f"10.4.0.{i}") > 0 for i in range(5)] == [True, True, True, False, False]
    clock.advance(11)  # the three have expired: room for new ones
    penalties.penalise("10.4.0.9", "timeout")
    assert penalties.remaining("10.4.0.9") > 0


# -- the unauthenticated request rate ------------------------------------------------------


def test_request_rate_refuses_past_the_burst_and_refills(clock: FakeClock) -> None:
    rate = RequestRate(rate=2.0, burst=3, clock=clock)
    assert [rate.take("127.0.0.2").allowed for _ in range(4)] == [True, True, True, False]
    refused = rate.take("127.0.0.2")
    assert (refused.allowed, refused.source, refused.retry_after) == (False, "127.0.0.2", 1.0)
    assert rate.take("127.0.0.1").allowed  # per source
    clock.advance(0.5)  # one request's worth
    assert [rate.take("127.0.0.2").allowed for _ in range(2)] == [True, False]
    clock.advance(-300)  # a clock stepping back refills nothing
    assert not rate.take("127.0.0.2").allowed


def test_request_rate_groups_ipv6_and_says_how_long_to_wait(clock: FakeClock) -> None:
    rate = RequestRate(rate=0.1, burst=1, clock=clock)
    assert rate.take("2001:db8::1").allowed
    refused = rate.take("2001:db8::2")
    assert (refused.allowed, refused.source, refused.retry_after) == (False, "2001:db8::/64", 10.0)


def test_request_rate_remembers_a_bounded_number_of_sources(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_TRACKED", 100)
    rate = RequestRate(rate=1.0, burst=5, clock=clock)
    for i in range(1000):
        rate.take(f"10.5.{i // 256}.{i % 256}")
    assert rate.tracked() <= 100


# -- settings ------------------------------------------------------------------------------


def test_the_limits_settings_are_checked() -> None:
    s = config.load(None, environ={})
    assert s.early_drop_fractions == (0.5, 0.3, 1.0)
    assert s.max_unauthenticated_per_source < s.max_connections
    assert s.ssh_max_unauthenticated_per_source < s.ssh_max_unauthenticated
    from_env = config.load(None, environ={"OPSCONSOLE_EARLY_DROP": "10:0:90"})
    assert from_env.early_drop_fractions == (0.1, 0, 0.9)
    for bad in ("50:30", "50:30:100:1", "60:30:50", "50:130:100", "a:b:c", "-1:30:100", "５0:30:100"):
        with pytest.raises(ConfigError, match="early_drop"):
            config.load(None, environ={}, early_drop=bad)
    with pytest.raises(ConfigError, match="penalty_min"):
        config.load(None, environ={}, penalty_min=60, penalty_max=30)
    with pytest.raises(ConfigError, match="unauthenticated_rate"):
        config.load(None, environ={}, unauthenticated_rate=0)
