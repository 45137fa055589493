"""Per-subject data keys under erasure, with several writers (instances) on one store:
every writer's keys go, no writer decrypts with a key it still has in memory, and a
writer stops encrypting under an erased key within the key cache's lifetime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from audit_kit import MASTER_KEY, TrailKit

from kroonika.audit import Actor, ActorType, PersonalData, SqlSubjectKeys, events
from kroonika.audit.privacy import reveal

PERSON = "EE38001085718"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(kit: TrailKit) -> dict[str, Any]:
    sealed = kit.trail.emit_sync(
        events.session_create(
            actor=Actor(ActorType.USER, subject=PERSON),
            personal=PersonalData(given_name="MARI-LIIS", family_name="MÄNNIK"),
        )
    )
    assert sealed is not None
    record: dict[str, Any] = orjson.loads(sealed.canonical)
    return record


def _two_writers(
    kit_factory: Callable[..., TrailKit], store_url: str, tmp_path: Path
) -> tuple[TrailKit, TrailKit]:
    a = kit_factory(store_url, stream="instance-a")
    b = kit_factory(store_url, stream="instance-b")
    return a, b


def test_erasure_deletes_the_keys_of_every_writer(
    kit_factory: Callable[..., TrailKit], store_url: str, tmp_path: Path
) -> None:
    """Two instances each made a key for the person; erasing on one deletes both."""
    a, b = _two_writers(kit_factory, store_url, tmp_path)
    ra, rb = _record(a), _record(b)
    assert ra["pii"]["kid"] != rb["pii"]["kid"]
    assert a.keys.erase(ra["actor"]["pseudonym"]) == 2
    fresh = SqlSubjectKeys(a.store, MASTER_KEY)
    assert reveal(ra["pii"], ra["id"], fresh) is None
    assert reveal(rb["pii"], rb["id"], fresh) is None


def test_no_instance_decrypts_with_an_erased_key_it_still_caches(
    kit_factory: Callable[..., TrailKit], store_url: str, tmp_path: Path
) -> None:
    """Instance B made the key and keeps it in memory; after instance A erased the person
    B's reveal answers 'erased' too (decryption reads the key table, not the cache)."""
    a, b = _two_writers(kit_factory, store_url, tmp_path)
    rb = _record(b)
    assert reveal(rb["pii"], rb["id"], b.keys) is not None
    assert a.keys.erase(rb["actor"]["pseudonym"]) == 1
    assert reveal(rb["pii"], rb["id"], b.keys) is None


def test_the_erasing_instance_makes_a_fresh_key_at_once(
    kit_factory: Callable[..., TrailKit], store_url: str, tmp_path: Path
) -> None:
    """A new event for the person after the erasure gets a new, stored, readable key."""
    a = kit_factory(store_url)
    before = _record(a)
    a.keys.erase(before["actor"]["pseudonym"])
    after = _record(a)
    assert after["pii"]["kid"] != before["pii"]["kid"]
    assert reveal(after["pii"], after["id"], SqlSubjectKeys(a.store, MASTER_KEY)) == {
        "personal_code": PERSON,
        "given_name": "MARI-LIIS",
        "family_name": "MÄNNIK",
    }
    assert reveal(before["pii"], before["id"], a.keys) is None


@contextmanager
def _instances(
    store_url: str, tmp_path: Path, **options: float
) -> Iterator[tuple[TrailKit, TrailKit, Clock]]:
    """Instances A and B on one store; B's subject keys take ``options`` and a test clock."""
    from audit_kit import make_kit

    from kroonika.audit import AuditTrail, Pipeline

    a = make_kit(store_url, tmp_path / "keys", stream="instance-a")
    clock = Clock()
    b = make_kit(store_url, tmp_path / "keys", stream="instance-b")
    b.keys = SqlSubjectKeys(b.store, MASTER_KEY, clock=clock, **options)  # type: ignore[arg-type]
    pipeline = Pipeline.standard(
        fingerprinter=b.fingerprinter, subject_keys=b.keys, counters=b.counters, strict=True
    )
    b.trail = AuditTrail(
        pipeline,
        b.store,
        b.keyring,
        stream="instance-b",
        counters=b.counters,
        subject_keys=b.keys,
        checkpoint_interval=3600,
    )
    try:
        yield a, b, clock
    finally:
        a.store.close()
        b.store.close()


def test_another_instance_stops_using_an_erased_key_after_the_cache_lifetime(
    store_url: str, tmp_path: Path
) -> None:
    """Instance B keeps a subject's key for at most ``key_ttl_s`` (even with no erasure
    check due): past it, B's next event for the person is under a fresh, readable key."""
    with _instances(store_url, tmp_path, key_ttl_s=60, erasure_check_s=3600) as (a, b, clock):
        first = _record(b)
        assert _record(b)["pii"]["kid"] == first["pii"]["kid"]  # cached within the TTL
        a.keys.erase(first["actor"]["pseudonym"])
        clock.now += 61
        later = _record(b)
        assert later["pii"]["kid"] != first["pii"]["kid"]
        assert reveal(later["pii"], later["id"], a.keys) is not None
        assert reveal(first["pii"], first["id"], a.keys) is None


def test_another_instance_forgets_an_erased_key_at_its_next_check(
    store_url: str, tmp_path: Path
) -> None:
    """Instance B's writer asks, at most every ``erasure_check_s``, which stored keys it
    used are gone: the first of B's events after the check is under a fresh, readable key
    (the one event committed before the check is under the erased key, unreadable)."""
    with _instances(store_url, tmp_path, erasure_check_s=5) as (a, b, clock):
        first = _record(b)
        _record(b)  # the key is now a stored key B uses from its cache
        a.keys.erase(first["actor"]["pseudonym"])
        assert _record(b)["pii"]["kid"] == first["pii"]["kid"]  # not checked yet
        clock.now += 5
        during = _record(b)  # encrypted before its commit's check: under the erased key
        assert during["pii"]["kid"] == first["pii"]["kid"]
        after = _record(b)
        assert after["pii"]["kid"] != first["pii"]["kid"]
        assert reveal(after["pii"], after["id"], a.keys) is not None
        assert reveal(during["pii"], during["id"], a.keys) is None


def test_a_hot_subject_keeps_its_key_while_many_cold_ones_pass(kit: TrailKit) -> None:
    """The key cache is a bounded LRU: a subject used between each of many others that
    overflow the cache keeps its one key (no fresh key, no extra row); the least recently
    used subject is the one that goes."""
    keys = SqlSubjectKeys(kit.store, MASTER_KEY, cache_size=4, clock=Clock())
    hot, _ = keys.get_or_create("hot")
    for n in range(200):
        keys.get_or_create(f"cold-{n}")
        assert keys.get_or_create("hot")[0] == hot
    made = [k.subject for k in keys.take_pending()]
    assert made.count("hot") == 1
    assert len(made) == 201
    oldest_cold, _ = keys.get_or_create("cold-196")  # evicted: a fresh key
    assert [k.subject for k in keys.take_pending()] == ["cold-196"]
    assert oldest_cold.startswith("cold-196/")


def test_anonymous_events_with_no_flow_share_the_months_key(kit: TrailKit) -> None:
    """Refused anonymous calls from one address, each its own request: their full address
    is under the month's key, one key for all of them (not one per request id, which a
    caller chooses and floods; decision 0028), and it stays readable."""
    from kroonika.audit import Correlation, Outcome, Source, Target
    from kroonika.audit.privacy import ANON_PREFIX

    records = []
    for n in range(20):
        sealed = kit.trail.emit_sync(
            events.admin_request(
                outcome=Outcome.FAILURE,
                reason="http_401",
                actor=Actor(ActorType.ANONYMOUS),
                source=Source(ip="198.51.100.77"),
                target=Target("admin_route", "/admin/config"),
                correlation=Correlation(request_id=f"req-{n}", trace_id=f"{n:032x}"),
                method="GET",
                route="/admin/config",
                status=401,
                auth="none",
            )
        )
        assert sealed is not None
        records.append(orjson.loads(sealed.canonical))
    kids = {r["pii"]["kid"] for r in records}
    assert len(kids) == 1
    (kid,) = kids
    assert kid.startswith(ANON_PREFIX + records[0]["time"][:7] + "/")
    stored = SqlSubjectKeys(kit.store, MASTER_KEY)
    assert reveal(records[-1]["pii"], records[-1]["id"], stored) == {"ip": "198.51.100.77"}
    assert stored.count(kid.rsplit("/", 1)[0]) == 1
