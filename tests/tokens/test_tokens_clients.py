"""Client registry: scrypt-hashed secrets, authentication."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update

from kroonika.db import make_engine
from kroonika.db.tokens import clients
from kroonika.tokens import (
    ClientError,
    ClientRegistry,
    FixedClock,
    InvalidClient,
    create_tables,
    hash_secret,
    verify_secret,
)


@pytest.fixture
def registry() -> ClientRegistry:
    engine = create_engine("sqlite://")
    create_tables(engine)
    return ClientRegistry(engine, clock=FixedClock(1), scrypt_n=2**10)


def test_hash_round_trip() -> None:
    """An scrypt hash verifies its secret and nothing else."""
    h = hash_secret("s3cret-value", n=2**10)
    assert h.startswith("scrypt$1024$8$1$")
    assert verify_secret("s3cret-value", h)
    assert not verify_secret("s3cret-valuE", h)


def test_garbage_hash_does_not_verify() -> None:
    """A corrupt stored hash never verifies."""
    assert not verify_secret("x", "scrypt$bad")
    assert not verify_secret("x", "md5$1$2$3$4$5")


def test_register_and_authenticate(registry: ClientRegistry) -> None:
    """A registered client authenticates with its secret, which is not stored."""
    new = registry.register("svc", allowed_audiences=["a"], allowed_claims=["role"])
    assert registry.authenticate(new.client.client_id, new.secret) == new.client
    with registry._engine.connect() as conn:
        stored = conn.execute(select(clients.c.secret_hash)).scalar_one()
    assert new.secret not in stored


def test_wrong_secret_and_unknown_client(registry: ClientRegistry) -> None:
    """Wrong secrets and unknown ids fail the same way."""
    new = registry.register("svc")
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret + "x")
    with pytest.raises(InvalidClient):
        registry.authenticate("kc_unknown", new.secret)


def test_cached_success_still_checks_secret(registry: ClientRegistry) -> None:
    """After a cached success a wrong secret still fails."""
    new = registry.register("svc")
    registry.authenticate(new.client.client_id, new.secret)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, "wrong")


def test_disabled_client_cannot_authenticate(registry: ClientRegistry) -> None:
    """Disabling a client takes effect even after a cached success."""
    new = registry.register("svc")
    registry.authenticate(new.client.client_id, new.secret)
    registry.set_disabled(new.client.client_id, True)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret)


def test_bad_claim_name_refused(registry: ClientRegistry) -> None:
    """A registration with an invalid claim name is refused."""
    with pytest.raises(ClientError):
        registry.register("svc", allowed_claims=["no spaces"])


def test_claim_name_ending_in_a_line_break_refused(registry: ClientRegistry) -> None:
    """``role\\n`` passed the ``^...$`` check (``$`` matches before a final line break)."""
    with pytest.raises(ClientError):
        registry.register("svc", allowed_claims=["role\n"])


@pytest.mark.parametrize(
    "client_id", ["\x00", "kc_\x00x", "a b", "x" * 65, "\u00e4", "a\r\nb", "\udcff"]
)
def test_client_ids_outside_visible_ascii_are_refused_unread(
    registry: ClientRegistry, client_id: str
) -> None:
    """Such an id is refused as invalid_client before any database lookup (PostgreSQL
    cannot even hold a NUL: that was a 500, and an unaudited authentication failure)."""
    with pytest.raises(InvalidClient):
        registry.authenticate(client_id, "secret")


def test_secret_with_lone_surrogate_refused(registry: ClientRegistry) -> None:
    """A secret that cannot be encoded is a failed authentication, not an exception."""
    new = registry.register("a")
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, "\udcff")


def test_disabled_elsewhere_refused_despite_cache(registry: ClientRegistry) -> None:
    """Disabling on another instance (another registry on the same database) takes
    effect at once: the success cache does not outlive the row."""
    new = registry.register("a")
    registry.authenticate(new.client.client_id, new.secret)  # now cached
    other = ClientRegistry(registry._engine, clock=FixedClock(1), scrypt_n=2**10)
    other.set_disabled(new.client.client_id, True)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret)


def test_new_secret_elsewhere_retires_cached_old_one(registry: ClientRegistry) -> None:
    """After a secret rotation on another instance, the old (cached) secret fails."""
    new = registry.register("a")
    registry.authenticate(new.client.client_id, new.secret)
    with registry._engine.begin() as conn:
        conn.execute(
            clients.update()
            .where(clients.c.client_id == new.client.client_id)
            .values(secret_hash=hash_secret("rotated", n=2**10))
        )
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret)
    assert registry.authenticate(new.client.client_id, "rotated").client_id == new.client.client_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "evil\x1b[31m"}, "control"),
        ({"name": "two\r\nlines"}, "control"),
        ({"name": "a", "allowed_audiences": ["a\nb"]}, "audience"),
        ({"name": "a", "allowed_audiences": ["with space"]}, "audience"),
        ({"name": "a", "allowed_audiences": [""]}, "audience"),
        ({"name": "a", "max_ttl_s": 10**30}, "max_ttl_s"),
        ({"name": "a", "max_ttl_s": 0}, "max_ttl_s"),
        ({"name": "a", "client_id": "id\x00"}, "client id"),
        ({"name": "a", "rate_limit": "1/s\n"}, "rate limit"),
    ],
)
def test_registration_refuses_unsafe_values(
    registry: ClientRegistry, kwargs: dict[str, object], message: str
) -> None:
    """Names, audiences, ids and limits that could forge output lines, overflow a column
    or never authenticate are refused at registration."""
    name = kwargs.pop("name")
    with pytest.raises(ClientError, match=message):
        registry.register(name, **kwargs)  # type: ignore[arg-type]


def test_unicode_name_is_fine(registry: ClientRegistry) -> None:
    """Printable non-ASCII names (Estonian services) are welcome."""
    assert registry.register("Maksu- ja Tolliamet – e-teenus ÕÄÖÜ").client.name.endswith("ÕÄÖÜ")


def test_remove(registry: ClientRegistry) -> None:
    """A removed registration no longer authenticates."""
    new = registry.register("a")
    registry.authenticate(new.client.client_id, new.secret)
    registry.remove(new.client.client_id)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret)
    assert registry.get(new.client.client_id) is None


@pytest.mark.parametrize(
    "text", ["lots", "100", "100/fortnight", "0/minute", "-5/minute", "10/minute;1/second", " "]
)
def test_bad_rate_limit_refused_and_not_stored(registry: ClientRegistry, text: str) -> None:
    """A rate limit the limiter would not apply as given is refused with a clear error
    (the syntax and an example), and nothing is registered."""
    with pytest.raises(ClientError, match="100/minute"):
        registry.register("svc", rate_limit=text)
    assert registry.list() == []


@pytest.mark.parametrize("text", ["100/minute", "5 per second", "10/2 hours", " 1/day "])
def test_rate_limit_stored_is_what_the_limiter_applies(registry: ClientRegistry, text: str) -> None:
    """An accepted rate limit is stored in a form the rate limiter parses to the same
    window as the text the administrator gave."""
    from limits import parse

    from kroonika.ratelimit._policy import client_limit

    stored = registry.register("svc", rate_limit=text).client.rate_limit
    assert stored is not None
    assert stored == registry.list()[0].rate_limit
    assert client_limit(stored) == parse(text)


@pytest.fixture
def stored(db_url: str) -> Iterator[ClientRegistry]:
    """A registry on SQLite and on the real PostgreSQL."""
    engine = make_engine(db_url)
    create_tables(engine)
    try:
        yield ClientRegistry(engine, clock=FixedClock(1), scrypt_n=2**10)
    finally:
        engine.dispose()


def test_a_change_writes_only_its_own_fields(stored: ClientRegistry) -> None:
    """A change of the TTL cap leaves the client disabled when it was disabled after the
    change was read: only the fields named are written."""
    cid = stored.register("svc", allowed_audiences=["a"], rate_limit="10/minute").client.client_id
    stored.set_disabled(cid, True)
    assert stored.change(cid, {"max_ttl_s": 3600}, {"max_ttl_s": 60})
    now = stored.get(cid)
    assert now is not None
    assert (now.max_ttl_s, now.disabled, now.rate_limit) == (60, True, "10/minute")


@pytest.mark.parametrize(
    ("field", "believed", "value"),
    [
        ("max_ttl_s", 7200, 60),
        ("allowed_audiences", ["a", "b"], ["a"]),
        ("rate_limit", None, "5/minute"),
        ("disabled", True, False),
        ("name", "old", "new"),
    ],
)
def test_a_change_of_a_field_that_moved_on_is_refused(
    stored: ClientRegistry, field: str, believed: Any, value: Any
) -> None:
    """A field that no longer holds the value the change was based on: nothing is
    written (compared in the database, in the same statement as the write)."""
    new = stored.register("svc", allowed_audiences=["a"], rate_limit="10/minute")
    assert not stored.change(new.client.client_id, {field: believed}, {field: value})
    assert stored.get(new.client.client_id) == new.client


def test_a_change_can_remove_the_rate_limit(stored: ClientRegistry) -> None:
    """``rate_limit`` None is no own limit; a change can remove one and set one again."""
    cid = stored.register("svc", rate_limit="10/minute").client.client_id
    assert stored.change(cid, {"rate_limit": "10/minute"}, {"rate_limit": None})
    assert stored.get(cid).rate_limit is None  # type: ignore[union-attr]
    assert stored.change(cid, {"rate_limit": None}, {"rate_limit": "5/minute"})
    assert stored.get(cid).rate_limit == "5/minute"  # type: ignore[union-attr]


def test_a_change_of_a_client_that_is_gone_is_refused(stored: ClientRegistry) -> None:
    assert not stored.change("kc_gone", {"max_ttl_s": 60}, {"max_ttl_s": 30})


def test_revised_sets_only_the_fields_given(registry: ClientRegistry) -> None:
    """A field given is set, ``rate_limit`` None included (the own limit removed); one
    not given stays; None for a field that cannot be empty, or an unknown field, is
    refused."""
    current = registry.register("svc", rate_limit="10/minute", max_ttl_s=600).client
    assert registry.revised(current, {"rate_limit": None}).rate_limit is None
    assert registry.revised(current, {"name": "x"}).rate_limit == "10/minute"
    for bad in ({"name": None}, {"max_ttl_s": None}, {"secret_hash": "x"}):
        with pytest.raises(ClientError):
            registry.revised(current, bad)


def test_a_change_compares_values_not_their_stored_spelling(stored: ClientRegistry) -> None:
    """A list stored with other JSON spacing (written by hand, or by another encoder)
    is the same list: the change applies, and is still refused once it moved on."""
    cid = stored.register("svc", allowed_audiences=["a", "b"]).client.client_id
    with stored._engine.begin() as conn:
        conn.execute(
            update(clients)
            .where(clients.c.client_id == cid)
            .values(allowed_audiences='[ "a", "b" ]', disabled=False)
        )
    assert stored.change(
        cid, {"allowed_audiences": ["a", "b"], "disabled": False}, {"allowed_audiences": ["a"]}
    )
    assert stored.get(cid).allowed_audiences == ("a",)  # type: ignore[union-attr]
    assert not stored.change(cid, {"allowed_audiences": ["a", "b"]}, {"allowed_audiences": []})


def test_an_empty_change_says_whether_the_client_is_there(stored: ClientRegistry) -> None:
    """Nothing to write (a PATCH that changes nothing): True for a client, False for
    none."""
    cid = stored.register("svc").client.client_id
    assert stored.change(cid, {}, {})
    assert not stored.change("kc_gone", {}, {})


def test_a_secret_swap_replaces_exactly_the_hash_it_read(stored: ClientRegistry) -> None:
    """The hash replaced is returned; with ``expected`` (an undo), the hash is put back
    only if it is still the one expected: a newer one (another rotation) stays."""
    cid = stored.register("svc").client.client_id
    first = stored._row(cid)[1]  # type: ignore[index]
    second, third = hash_secret("b", n=2**10), hash_secret("c", n=2**10)
    assert stored.swap_secret_hash(cid, second) == first
    assert stored.swap_secret_hash(cid, third, expected=first) is None
    assert stored._row(cid)[1] == second  # type: ignore[index]
    assert stored.swap_secret_hash(cid, first, expected=second) == second
    assert stored._row(cid)[1] == first  # type: ignore[index]
    assert stored.swap_secret_hash("kc_gone", third) is None


class _RotatedAfterTheRead:
    """``engine``, except that the first connection, once closed (the swap has read the
    hash), is followed by another writer storing ``other`` as the client's hash."""

    def __init__(self, engine: Any, client_id: str, other: str) -> None:
        self.engine, self.client_id, self.other, self.landed = engine, client_id, other, False

    @contextmanager
    def connect(self) -> Iterator[Any]:
        with self.engine.connect() as conn:
            yield conn
        if not self.landed:
            self.landed = True
            with self.engine.begin() as conn:
                conn.execute(
                    update(clients)
                    .where(clients.c.client_id == self.client_id)
                    .values(secret_hash=self.other)
                )

    def begin(self) -> Any:
        return self.engine.begin()


def test_a_secret_swap_overtaken_by_another_writes_nothing(
    stored: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another rotation between the swap's read and its write: the swap writes nothing
    (None), so the hash it would report as replaced is never one it did not replace."""
    cid = stored.register("svc").client.client_id
    other = hash_secret("other", n=2**10)
    racing = _RotatedAfterTheRead(stored._engine, cid, other)
    monkeypatch.setattr(stored, "_engine", racing)
    assert stored.swap_secret_hash(cid, hash_secret("mine", n=2**10)) is None
    monkeypatch.undo()
    assert racing.landed
    assert stored._row(cid)[1] == other  # type: ignore[index]


def _version(registry: ClientRegistry, client_id: str) -> int:
    with registry._engine.connect() as conn:
        found = conn.execute(
            select(clients.c.version).where(clients.c.client_id == client_id)
        ).scalar_one()
    return int(found)


def test_every_write_of_a_client_bumps_its_version(stored: ClientRegistry) -> None:
    """Registration is version 1; a change, a disable, a secret swap and an undo each
    produce the next version and say which (a change with nothing to write, the one it
    read); nothing is written, and no version given, for a client that is gone."""
    cid = stored.register("svc", max_ttl_s=600).client.client_id
    assert _version(stored, cid) == 1
    assert stored.change(cid, {"max_ttl_s": 600}, {"max_ttl_s": 60}) == 2
    assert stored.change(cid, {}, {}) == 2
    assert stored.set_disabled(cid, True) == 3
    assert stored.swap_secret_hash(cid, hash_secret("b", n=2**10)) is not None
    assert _version(stored, cid) == 4
    assert stored.undo(cid, 4, {"disabled": True}, {"disabled": False}) == ()
    assert _version(stored, cid) == 5
    assert stored.set_disabled("kc_gone", True) is None
    assert stored.change("kc_gone", {}, {}) is None


def test_an_undo_never_overwrites_a_newer_write_of_the_same_value(
    stored: ClientRegistry,
) -> None:
    """Two disables of an enabled client: the undo of the first (its record refused)
    finds the client at the second's version and leaves it disabled, naming the field
    it skipped; the undo of the second, at its own version, enables it again."""
    cid = stored.register("svc").client.client_id
    first = stored.set_disabled(cid, True)
    second = stored.set_disabled(cid, True)
    assert first is not None
    assert second is not None
    assert stored.undo(cid, first, {"disabled": True}, {"disabled": False}) == ("disabled",)
    assert stored.get(cid).disabled is True  # type: ignore[union-attr]
    assert stored.undo(cid, second, {"disabled": True}, {"disabled": False}) == ()
    assert stored.get(cid).disabled is False  # type: ignore[union-attr]


def test_an_undo_overtaken_by_a_change_of_another_field_leaves_everything(
    stored: ClientRegistry,
) -> None:
    """A newer write of any field (a disable after a TTL cap change) moves the version:
    the undo cannot know which fields it wrote, so it puts none back."""
    cid = stored.register("svc", max_ttl_s=600).client.client_id
    version = stored.change(cid, {"max_ttl_s": 600}, {"max_ttl_s": 60})
    assert version is not None
    stored.set_disabled(cid, True)
    assert stored.undo(cid, version, {"max_ttl_s": 60}, {"max_ttl_s": 600}) == ("max_ttl_s",)
    now = stored.get(cid)
    assert now is not None
    assert (now.max_ttl_s, now.disabled) == (60, True)


def test_an_undo_keeps_a_field_a_writer_without_versions_moved(stored: ClientRegistry) -> None:
    """A writer that does not bump the version (an instance still on the code before
    migration k0004) changed one of the fields: that field keeps its value, the others
    are put back, as before the version existed."""
    cid = stored.register("svc", max_ttl_s=600, rate_limit="10/minute").client.client_id
    wrote = {"max_ttl_s": 60, "rate_limit": "5/minute"}
    version = stored.change(cid, {"max_ttl_s": 600, "rate_limit": "10/minute"}, wrote)
    assert version is not None
    with stored._engine.begin() as conn:
        conn.execute(update(clients).where(clients.c.client_id == cid).values(max_ttl_s=30))
    before = {"max_ttl_s": 600, "rate_limit": "10/minute"}
    assert stored.undo(cid, version, wrote, before) == ("max_ttl_s",)
    now = stored.get(cid)
    assert now is not None
    assert (now.max_ttl_s, now.rate_limit) == (30, "10/minute")
