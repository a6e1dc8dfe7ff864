"""IMAP: a message that arrives while the poller has its mailbox open is seen by the next
look, not only after the next IDLE (up to a minute later). Dovecot does not report another
session's APPEND to a UID SEARCH; a NOOP first brings the session's view up to date."""

from __future__ import annotations

from conftest import MEDIUM_BODY, make_mail

from gateway.imap import connect, fetch_new


def test_a_message_appended_while_the_mailbox_is_open_is_fetched_by_the_next_look(imap_ctx, dovecot):
    box = imap_ctx.settings.imap[0]
    client = connect(box)  # open and selected, as between two IDLEs
    try:
        assert fetch_new(imap_ctx, box, client) == 0
        dovecot.append(make_mail(MEDIUM_BODY))  # by another session, as the mail server does
        assert fetch_new(imap_ctx, box, client) == 1
    finally:
        client.logout()
