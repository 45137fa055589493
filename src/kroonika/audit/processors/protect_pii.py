"""protect_pii: personal data into ``pii``, AES-GCM under a per-subject data key.

Block: ``{"kid": key id, "ct": base64(nonce || ciphertext || tag)}``.

The plaintext is the JSON of the personal fields (personal code, names, e-mail,
phone, full IP address). The key belongs to the subject's pseudonym; for events with
no known subject, to their login flow (``flow:…``, when ``correlation.flow_id`` names
one: the steps before TARA names the person, erased with the person whose login the
flow became, decision 0023) or else to a monthly ``anon:YYYY-MM`` subject. Erasure
(deleting the subject's keys) and retention can shred each. The AAD is the event id: a
ciphertext cannot be moved to another event.
"""

from __future__ import annotations

from binascii import b2a_base64

import orjson

from kroonika.audit._model import AuditEvent
from kroonika.audit._random import NONCES
from kroonika.audit.privacy import SubjectKeys, anon_subject, flow_subject


class ProtectPersonalData:
    def __init__(self, keys: SubjectKeys) -> None:
        self._keys = keys

    def __call__(self, event: AuditEvent) -> AuditEvent:
        personal = event.personal.as_dict() if event.personal is not None else {}
        src = event.source
        if src is not None and src.ip is not None and src.ip_prefix is None:
            personal["ip"] = src.ip
        if not personal:
            event.personal = None
            return event
        subject = event.actor.pseudonym
        if subject is None:
            flow = event.correlation.flow_id if event.correlation is not None else None
            subject = flow_subject(flow) if flow else anon_subject(event.time or "")
        key_id, aead = self._keys.get_or_create(subject)
        nonce = NONCES.take()  # the kernel's CSPRNG, read once per 256 nonces
        ct = aead.encrypt(nonce, orjson.dumps(personal), (event.id or "").encode())
        # b2a_base64 is what base64.b64encode calls, without its checks
        event.pii = {"kid": key_id, "ct": b2a_base64(nonce + ct, newline=False).decode()}
        event.personal = None
        return event
