"""A reply to one of our mails, matched by its signed `reply+TOKEN@` address.

The token says which participant the address was issued to; the sender must be that
participant. Anything else changes nothing and is recorded as rejected with the reason.
Until the keyword actions exist, a genuine reply is kept on the record as a comment.
"""

from __future__ import annotations

from gateway.bootstrap import Context
from gateway.handlers import Outcome
from gateway.tokens import parse_token
from parsers.mime import ParsedMessage
from store.models import InboundMessage, Participant


def handle_reply(ctx: Context, row: InboundMessage, msg: ParsedMessage, token: str) -> Outcome:
    ids = parse_token(ctx.settings.gateway.secret, token)
    if ids is None:
        return Outcome("rejected", "reply token is not genuine (forged or damaged)")
    record_id, participant_id = ids
    participant = Participant.get_or_none((Participant.id == participant_id) &
                                          (Participant.record == record_id))
    if participant is None:
        return Outcome("rejected", "reply token names no participant of this gateway")
    if participant.email != msg.from_addr:
        return Outcome("rejected", f"reply address of {participant.email} used by {msg.from_addr}",
                       record_id)
    return Outcome("processed", "reply kept as a comment", record_id,
                   [dict(record_id=record_id, inbound_id=row.id, kind="comment", actor=msg.from_addr,
                         data={"role": participant.role, "subject": msg.subject, "text": msg.text[:20000]})])
