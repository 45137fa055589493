"""Queries: the byte pre-filter never changes what a query finds."""

from __future__ import annotations

import orjson
import pytest
from audit_kit import TrailKit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    Category,
    Correlation,
    Outcome,
    Query,
    QueryInvalid,
    Source,
    events,
    run_query,
)

# values whose JSON needs escaping, or is not ASCII, or is a prefix of another
_IDS = ["req-1", 'req-"quoted"', "req-back\\slash", "req-Ülle-ЖЖ", "req-10", "req-1-2"]
_SUBJECTS = ["EE38001085718", "EE49403136526", "EE60001019906"]


def _event(i: int) -> AuditEvent:
    maker = [events.auth_login, events.auth_logout, events.token_issue, events.session_create][
        i % 4
    ]
    return maker(
        outcome=Outcome.FAILURE if i % 5 == 0 else Outcome.SUCCESS,
        actor=Actor(ActorType.USER, subject=_SUBJECTS[i % 3]),
        source=Source(ip=f"203.0.{i % 3}.{i % 200}"),
        correlation=Correlation(request_id=_IDS[i % len(_IDS)], flow_id=f"flow-{i % 7}"),
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> TrailKit:
    from audit_kit import make_kit

    base = tmp_path_factory.mktemp("query")
    kit = make_kit(f"sqlite:///{base / 'audit.db'}", base / "keys", strict=False)
    kit.trail.log_start_sync()
    for start in range(0, 600, 50):  # 12 blocks, so whole blocks are skipped too
        kit.trail.emit_many_sync([_event(i) for i in range(start, start + 50)])
    return kit


def _reference(kit: TrailKit, query: Query) -> list[bytes]:
    everything = list(run_query(kit.store, Query()))
    return [b for b in everything if query.matches(orjson.loads(b))]


@given(
    types=st.sets(st.sampled_from(["auth", "auth.login", "token", "session.create", "au"])),
    categories=st.sets(st.sampled_from(["authentication", "token", "session"])),
    outcome=st.sampled_from([None, "success", "failure"]),
    actor_indexes=st.sets(st.sampled_from([0, 1, 2])),
    correlation=st.sampled_from([None, *_IDS, "flow-3", "req"]),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_prefilter_finds_exactly_what_matching_finds(
    filled: TrailKit,
    types: set[str],
    categories: set[str],
    outcome: str | None,
    actor_indexes: set[int],
    correlation: str | None,
) -> None:
    actors = tuple(filled.fingerprinter.pseudonym(_SUBJECTS[i]) for i in sorted(actor_indexes))
    query = Query(
        types=tuple(sorted(types)),
        categories=tuple(sorted(categories)),
        outcome=outcome,
        actors=actors,
        correlation=correlation,
    )
    assert list(run_query(filled.store, query)) == _reference(filled, query)


def test_escaped_and_unicode_correlation_ids_are_found(filled: TrailKit) -> None:
    for value in ('req-"quoted"', "req-back\\slash", "req-Ülle-ЖЖ"):
        found = [orjson.loads(b) for b in run_query(filled.store, Query(correlation=value))]
        assert len(found) == 100
        assert all(d["correlation"]["request_id"] == value for d in found)


def test_several_actors_are_one_person_under_each_pseudonym(filled: TrailKit) -> None:
    """Actors are alternatives (as after a rotation of the pseudonymisation key, when one
    person has a pseudonym per key): every event of either, in storage order, no other."""
    a, b = (filled.fingerprinter.pseudonym(s) for s in _SUBJECTS[:2])
    both = [orjson.loads(x) for x in run_query(filled.store, Query(actors=(a, b)))]
    assert {d["actor"]["pseudonym"] for d in both} == {a, b}
    assert len(both) == 400
    each = [
        orjson.loads(x)
        for x in run_query(filled.store, Query())
        if orjson.loads(x).get("actor", {}).get("pseudonym") in (a, b)
    ]
    assert both == each
    assert "actors=" in Query(actors=(a, b)).describe()


def test_a_type_prefix_finds_its_subtypes_but_not_a_longer_word(filled: TrailKit) -> None:
    auth = {orjson.loads(b)["type"] for b in run_query(filled.store, Query(types=("auth",)))}
    assert auth == {"auth.login", "auth.logout"}
    assert list(run_query(filled.store, Query(types=("au",)))) == []


def test_a_type_prefix_with_a_final_dot_finds_the_same(filled: TrailKit) -> None:
    """`auth.` (a sink's spelling) is `auth`, and passes the check (decision 0034)."""
    dotted = Query(types=("auth.", "session.create."))
    dotted.check()
    plain = Query(types=("auth", "session.create"))
    assert list(run_query(filled.store, dotted)) == list(run_query(filled.store, plain))
    assert dotted.describe() == plain.describe()


def test_paging_with_a_cursor_gives_the_same_records(filled: TrailKit) -> None:
    """The cursor is found without the pre-filter; pages then filter as usual."""
    actor = filled.fingerprinter.pseudonym(_SUBJECTS[1])
    full = list(run_query(filled.store, Query(actors=(actor,), outcome="failure")))
    assert len(full) > 20
    pages: list[bytes] = []
    after: tuple[str, int] | None = None
    while True:
        page = list(
            run_query(filled.store, Query(actors=(actor,), outcome="failure", after=after), limit=7)
        )
        if not page:
            break
        pages.extend(page)
        last = orjson.loads(page[-1])
        after = (last["stream"], last["seq"])
    assert pages == full


@pytest.mark.parametrize(
    ("param", "query"),
    [
        ("type", Query(types=("auth.login", "auth.logon"))),
        ("type", Query(types=("au",))),  # a prefix ends at a dot
        ("type", Query(types=("auth..",))),
        ("type", Query(types=(".",))),
        ("type", Query(types=("AUTH.LOGIN",))),
        ("type", Query(types=("",))),
        ("category", Query(categories=("authentication", "authn"))),
        ("outcome", Query(outcome="failed")),
    ],
)
def test_a_filter_value_no_event_can_have_is_refused(param: str, query: Query) -> None:
    """A type, category or outcome outside the catalogue is an error naming the filter,
    not a scan of the whole trail that finds nothing."""
    with pytest.raises(QueryInvalid) as caught:
        query.check()
    assert caught.value.param == param
    assert str(caught.value).startswith(f"{param} '")
    assert caught.value.without_value.startswith(f"{param}: value ")


@pytest.mark.parametrize(
    "query",
    [
        Query(),
        Query(types=("auth.login", "auth", "auth.flow", "token.revoke", "audit")),
        Query(categories=tuple(c.value for c in Category)),
        Query(outcome="success"),
        Query(outcome="unknown", actors=("anything",), correlation="anything", stream="any"),
    ],
)
def test_catalogue_types_prefixes_categories_and_outcomes_pass(query: Query) -> None:
    """Every catalogue type, each prefix of one that ends at a dot, every category and
    outcome is a valid filter; free-text filters are not checked."""
    query.check()


def test_a_refused_value_is_shown_short_and_without_controls() -> None:
    """The message shows a long or hostile value cut short, its controls escaped."""
    with pytest.raises(QueryInvalid) as caught:
        Query(types=("x\x1b[2J\nforged" + "y" * 5000,)).check()
    message = str(caught.value)
    assert len(message) < 400
    assert message.isprintable()
    assert "\\x1b" in message
    assert "forged" not in caught.value.without_value
