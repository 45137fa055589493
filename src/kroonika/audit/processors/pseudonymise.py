"""pseudonymise: ``actor.pseudonym`` = keyed HMAC-SHA256 of the subject, with key id."""

from __future__ import annotations

from kroonika.audit._model import AuditEvent, PersonalData
from kroonika.audit.privacy import Fingerprinter


class Pseudonymise:
    """Replace ``actor.subject`` by its pseudonym; the clear subject moves into the
    personal data that ``protect_pii`` encrypts next. Pseudonyms are cached."""

    def __init__(self, fingerprinter: Fingerprinter) -> None:
        self._pseudonym = fingerprinter.pseudonym

    def __call__(self, event: AuditEvent) -> AuditEvent:
        actor = event.actor
        subject = actor.subject
        if subject is not None:
            actor.pseudonym = self._pseudonym(subject)
            if event.personal is None:
                event.personal = PersonalData(personal_code=subject)
            elif event.personal.personal_code is None:
                event.personal.personal_code = subject
            actor.subject = None
        return event
