"""The `liuhen` command: run the gateway, feed it mail, and look inside."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import peewee

from config.settings import ConfigError, load_settings
from gateway.bootstrap import Context, build_context
from gateway.delivery import make_transport
from gateway.logs import configure as configure_logging

EX_OK, EX_USAGE, EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 70, 75, 78


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EX_USAGE
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        configure_logging(None, args.verbose)
        print(f"liuhen: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    configure_logging(settings, args.verbose)
    if args.func is cmd_demo:
        return cmd_demo(args, settings)
    if args.func in (cmd_status, cmd_dkim_keygen, cmd_doctor):  # they answer without a database
        return _quietly_piped(lambda: args.func(args, settings))
    try:
        # The directory sync writes the directory file: before the first, there is none.
        ctx = build_context(settings, directory_required=args.func not in (cmd_directory_sync, cmd_directory_history))
    except Exception as exc:  # the database or a config file cannot be opened
        print(f"liuhen: cannot start: {' '.join(str(exc).split())}", file=sys.stderr)
        # A database that is down (or a full disk) is temporary: 75 tells a supervisor or an
        # MTA to try again later; 78 (EX_CONFIG), often marked do-not-restart, is for a
        # configuration that cannot work.
        temporary = isinstance(exc, (peewee.OperationalError, peewee.InterfaceError, OSError))
        return EX_TEMPFAIL if temporary or args.func is cmd_ingest else EX_CONFIG
    return _quietly_piped(lambda: args.func(args, ctx))


def _quietly_piped(command: Callable[[], int]) -> int:
    try:
        status = command()
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except BrokenPipeError:
        # `liuhen show … | head`: the reader has what it wanted. Point stdout at /dev/null so
        # that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liuhen", description="留痕 liuhen — email-driven workflow gateway")
    p.add_argument("--config", help="TOML configuration file (default: $LIUHEN_CONFIG, else built-in defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(title="commands")

    s = sub.add_parser("serve", help="run SMTP intake and the outbox worker until stopped")
    s.add_argument("--no-delivery", action="store_true", help="queue outbound mail but do not deliver it")
    s.set_defaults(func=cmd_serve)

    links = sub.add_parser("client-links", help="the read-only status pages of clients").add_subparsers(
        title="client-links commands")
    s = links.add_parser("revoke", help="end the status page links of a record's clients")
    s.add_argument("ref", help="record ID, e.g. CUS-2026-0001")
    s.set_defaults(func=cmd_client_links_revoke)

    s = sub.add_parser("doctor", help="check the configuration, database, disk, SMTP, smarthost, DNS and calendar")
    s.set_defaults(func=cmd_doctor)

    dkim = sub.add_parser("dkim", help="DKIM signing of outbound mail").add_subparsers(title="dkim commands")
    s = dkim.add_parser("keygen", help="make an RSA-2048 key and print the DNS record and settings for it")
    s.add_argument("--selector", default="liuhen", help="the DKIM selector (default liuhen)")
    s.add_argument("--out", required=True, help="where to write the private key (PEM, mode 600)")
    s.set_defaults(func=cmd_dkim_keygen)

    s = sub.add_parser("web", help="run the staff web console alone ([web] host, port; serve starts it too)")
    s.set_defaults(func=cmd_web)

    s = sub.add_parser("ingest", help="take one raw message from FILE or stdin (MTA pipe transport)")
    s.add_argument("file", nargs="?", help="the message file (default: stdin)")
    s.add_argument("--sender", help="envelope sender (Postfix: ${sender}); empty string for bounces")
    s.add_argument("--recipient", action="append", default=[], help="envelope recipient (repeatable)")
    s.set_defaults(func=cmd_ingest)

    outbox = sub.add_parser("outbox", help="outbound mail queue").add_subparsers(title="outbox commands")
    s = outbox.add_parser("flush", help="deliver everything that is due now")
    s.set_defaults(func=cmd_outbox_flush)
    s = outbox.add_parser("list", help="show the outbound queue")
    s.add_argument("--json", action="store_true")
    s.add_argument("--status", help="only this status (queued, sending, sent, failed)")
    s.set_defaults(func=cmd_outbox_list)

    inbox = sub.add_parser("inbox", help="inbound mail and what became of it").add_subparsers(title="inbox commands")
    s = inbox.add_parser("list", help="every inbound message with its state and reason")
    s.add_argument("--json", action="store_true")
    s.add_argument("--state", help="only this state (received, processed, rejected, ignored, error)")
    s.set_defaults(func=cmd_inbox_list)
    s = inbox.add_parser("retry", help="process a message in state 'error' again")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_inbox_retry)

    s = sub.add_parser("show", help="print a record: fields, participants, milestones, events")
    s.add_argument("ref", help="record id, e.g. PRJ-2026-0001")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    imap = sub.add_parser("imap", help="IMAP mailboxes").add_subparsers(title="imap commands")
    s = imap.add_parser("check", help="test every [[imap]] mailbox and say clearly what is wrong")
    s.set_defaults(func=cmd_imap_check)

    directory = sub.add_parser("directory", help="the organisation directory").add_subparsers(
        title="directory commands")
    s = directory.add_parser("sync", help="read people and departments from LDAP or an HR export "
                                          "([directory_sync]) into [directory] path")
    s.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    s.add_argument("--from", dest="source", help="a CSV/XLSX export to read instead of [directory_sync] source")
    s.set_defaults(func=cmd_directory_sync)
    s = directory.add_parser("history", help="what the latest syncs changed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_directory_history)

    s = sub.add_parser("tick", help="run one reminder/escalation/digest sweep (at --now, for tests and catch-up)")
    s.add_argument("--now", help="ISO 8601 instant; without an offset, in the configured timezone")
    s.set_defaults(func=cmd_tick)

    s = sub.add_parser("search", help="search archived records (with --all, open ones too)")
    s.add_argument("words", nargs="+")
    s.add_argument("--all", action="store_true", help="include records that are not archived yet")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(func=cmd_search)

    archive = sub.add_parser("archive", help="the record archive").add_subparsers(title="archive commands")
    s = archive.add_parser("export", help="write a self-contained bundle of one record")
    s.add_argument("ref", help="record id, e.g. PRJ-2026-0001")
    s.add_argument("--out", required=True, help="folder to write <ref>/ into")
    s.set_defaults(func=cmd_archive_export)

    s = sub.add_parser("status", help="is the database reachable, how much mail waits (exit 75 when it is down)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("demo", help="scripted walkthrough in a temporary directory")
    s.set_defaults(func=cmd_demo)
    return p


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.serve import run_gateway
    from gateway.web.server import WebProcess

    transport = None if args.no_delivery else make_transport(ctx.settings.delivery, ctx.settings.maildir_path)

    s = ctx.settings

    def announce() -> None:
        print(f"liuhen: accepting mail for @{s.gateway.domain} on {s.smtp.host}:{s.smtp.port}; "
              f"database {s.database_url}; delivery {s.delivery.mode}"
              + (f" → {s.maildir_path}" if s.delivery.mode == "maildir" else f" → {s.delivery.host}:{s.delivery.port}")
              + (f"; web console {s.web.url}" if s.web.enabled else ""),
              flush=True)
        _notify_systemd("READY=1")

    web = WebProcess(s) if s.web.enabled else None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_gateway(ctx, transport, stop, on_ready=announce, separate_process=True)

    if web is not None:
        web.start()
    try:
        asyncio.run(run())
    except (OSError, RuntimeError) as exc:  # the port is taken, the processor cannot start
        print(f"liuhen: cannot serve: {exc}", file=sys.stderr)
        return EX_SOFTWARE
    finally:
        if web is not None:
            web.stop()
    return EX_OK


def cmd_client_links_revoke(args: argparse.Namespace, ctx: Context) -> int:
    from store.models import Record
    from store.signins import revoke_client_links

    record = Record.get_or_none(Record.ref == args.ref.upper())
    if record is None:
        print(f"no record {args.ref}", file=sys.stderr)
        return EX_USAGE
    print(f"{record.ref}: {revoke_client_links(record.id, ctx.clock.now())} link(s) revoked")
    return EX_OK


def cmd_dkim_keygen(args: argparse.Namespace, settings: Any) -> int:
    """An RSA-2048 key by openssl (PKCS#1, as dkimpy reads it) and its public half for DNS."""
    import base64
    import subprocess

    out = Path(args.out)
    if out.exists():
        print(f"liuhen dkim keygen: {out} exists; not overwritten", file=sys.stderr)
        return EX_USAGE
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(out), "2048"], check=True,
                       capture_output=True)
    finally:
        os.umask(old)
    public = subprocess.run(["openssl", "rsa", "-in", str(out), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    domain = settings.delivery.dkim_domain or settings.gateway.domain
    print(f'{args.selector}._domainkey.{domain}. IN TXT "v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"')
    print(f'\n# and in the configuration:\n[delivery]\ndkim_selector = "{args.selector}"\n'
          f'dkim_key_file = "{out.resolve()}"')
    return EX_OK


def cmd_doctor(args: argparse.Namespace, settings: Any) -> int:
    from gateway.doctor import examine, render

    findings = examine(settings)
    print(render(findings))
    return EX_SOFTWARE if any(f.ok is False for f in findings) else EX_OK


def _notify_systemd(state: str) -> None:
    """sd_notify(3) for a Type=notify unit (deploy/liuhen.service): a datagram to the socket
    systemd names in NOTIFY_SOCKET; nothing when not run by systemd."""
    import socket

    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        try:
            notify.sendto(state.encode(), address)
        except OSError as exc:
            logging.getLogger(__name__).warning("could not tell systemd %s: %s", state, exc)


def cmd_web(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.web.server import run_web

    print(f"liuhen: web console on {ctx.settings.web.url}", flush=True)
    run_web(ctx.settings)
    return EX_OK


def cmd_ingest(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.intake import store_raw
    from gateway.pipeline import process_inbound

    try:
        raw = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"liuhen ingest: cannot read message: {exc}", file=sys.stderr)
        return EX_USAGE
    if not raw.strip():
        print("liuhen ingest: empty message", file=sys.stderr)
        return EX_DATAERR
    try:
        stored = store_raw(ctx.db, raw, source="ingest", envelope_from=args.sender,
                           envelope_to=args.recipient, now=ctx.clock.now())
    except Exception as exc:
        print(f"liuhen ingest: could not store the message, try again later: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    # Stored: from here on the mail is ours. Processing problems end in a visible state
    # (error) and do not make the MTA resend.
    state = process_inbound(ctx, stored.inbound_id)
    print(f"IN-{stored.inbound_id} {state}{' (duplicate)' if stored.duplicate else ''}")
    return EX_OK


def cmd_outbox_flush(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.outbox import deliver_due

    transport = make_transport(ctx.settings.delivery, ctx.settings.maildir_path)
    total = 0
    while n := deliver_due(ctx, transport):
        total += n
    print(f"{total} mail(s) attempted")
    return EX_OK


def cmd_outbox_list(args: argparse.Namespace, ctx: Context) -> int:
    from store.models import OutboundMessage

    query = OutboundMessage.select().order_by(OutboundMessage.id)
    if args.status:
        query = query.where(OutboundMessage.status == args.status)
    rows = [dict(id=m.id, status=m.status, kind=m.kind, to=m.to_addr, cc=m.cc, subject=m.subject,
                 record_id=m.record_id, attempts=m.attempts, next_attempt_at=_iso(m.next_attempt_at),
                 last_error=m.last_error, message_id=m.message_id, reply_to=m.headers.get("Reply-To", ""),
                 created_at=_iso(m.created_at), sent_at=_iso(m.sent_at)) for m in query]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['id']:>6} {r['status']:<8} {r['kind']:<16} {r['to']:<36} {r['subject']}")
    return EX_OK


def cmd_inbox_list(args: argparse.Namespace, ctx: Context) -> int:
    from store.models import InboundMessage

    fields = (InboundMessage.id, InboundMessage.received_at, InboundMessage.source, InboundMessage.state,
              InboundMessage.reason, InboundMessage.subject, InboundMessage.from_addr,
              InboundMessage.envelope_from, InboundMessage.envelope_to, InboundMessage.record_id,
              InboundMessage.message_id)
    query = InboundMessage.select(*fields).order_by(InboundMessage.id)
    if args.state:
        query = query.where(InboundMessage.state == args.state)
    rows = [dict(id=m.id, received_at=_iso(m.received_at), source=m.source, state=m.state, reason=m.reason,
                 subject=m.subject, from_addr=m.from_addr, envelope_from=m.envelope_from,
                 envelope_to=m.envelope_to, record_id=m.record_id, message_id=m.message_id) for m in query]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"IN-{r['id']:<6} {r['state']:<10} {r['from_addr']:<32} {r['subject'][:40]:<40} {r['reason']}")
    return EX_OK


def cmd_inbox_retry(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.pipeline import process_inbound
    from store.repositories import retry_inbound

    if not retry_inbound(args.id):
        print(f"IN-{args.id} is not in state 'error'", file=sys.stderr)
        return EX_USAGE
    print(f"IN-{args.id} {process_inbound(ctx, args.id)}")
    return EX_OK


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.report import record_report, render_report

    report = record_report(ctx, args.ref)
    if report is None:
        print(f"no record {args.ref}", file=sys.stderr)
        return EX_USAGE
    if args.json:
        _print_json(report)
    else:
        print(render_report(report))
    return EX_OK


def cmd_imap_check(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.imap import ImapError, check

    if not ctx.settings.imap:
        print("no [[imap]] mailboxes are configured")
        return EX_OK
    failed = 0
    for box in ctx.settings.imap:
        try:
            for line in check(box):
                print(f"{box.address}: {line}")
        except ImapError as exc:
            failed += 1
            print(f"{box.address}: FAILED at {exc}")
    return EX_CONFIG if failed else EX_OK


def cmd_directory_sync(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from config.directory import Directory
    from gateway.directory_sync import (
        SyncError,
        build_directory,
        changes_between,
        read_ldap,
        read_table,
        write_directory,
    )
    from store.repositories import record_directory_sync

    s = ctx.settings.directory_sync
    source = args.source or s.source
    target = ctx.settings.directory.path
    if not source:
        print("liuhen: set [directory_sync] source (\"ldap\" or a CSV/XLSX file), or give --from FILE",
              file=sys.stderr)
        return EX_CONFIG
    if not target:
        print("liuhen: set [directory] path: the file the synced directory is written to "
              "(the sample in config/ is not overwritten)", file=sys.stderr)
        return EX_CONFIG
    path = Path(target)
    try:
        entries = read_ldap(s) if source == "ldap" else read_table(Path(source), s)
        current = Directory.load(path) if path.exists() else Directory([], [])
        synced = build_directory(entries, s, current)
    except SyncError as exc:
        print(f"liuhen: directory sync: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if source == "ldap" else EX_DATAERR
    changes = changes_between(current, synced)
    for line in changes.lines():
        print(line)
    described = s.url if source == "ldap" else source
    print(f"{len(synced.people)} people in {len(synced.departments)} departments from {described}: "
          f"{len(changes.added)} added, {len(changes.removed)} removed, {len(changes.changed)} changed")
    if args.dry_run or not changes:
        print("dry run: nothing written" if args.dry_run else "no change: nothing written")
        return EX_OK
    write_directory(path, synced, f"Written by `liuhen directory sync` from {described}; edits here are replaced\n"
                                  f"by the next sync. History: `liuhen directory history`.")
    with ctx.db.atomic():
        record_directory_sync(described, changes.as_data(), ctx.clock.now())
    print(f"written to {path}")
    return EX_OK


def cmd_directory_history(args: argparse.Namespace, ctx: Context) -> int:
    from store.repositories import directory_history

    syncs = [{"at": _iso(e.at), "source": e.actor, **e.data} for e in directory_history()]
    if args.json:
        _print_json(syncs)
        return EX_OK
    for sync in syncs:
        print(f"{sync['at']}  {sync['source']}: +{len(sync['added'])} -{len(sync['removed'])} "
              f"~{len(sync['changed'])}")
    return EX_OK


def cmd_tick(args: argparse.Namespace, ctx: Context) -> int:
    from dataclasses import replace
    from datetime import datetime

    from gateway.clock import FixedClock
    from gateway.scheduler import sweep

    if args.now:
        try:
            instant = datetime.fromisoformat(args.now)
        except ValueError:
            print(f"liuhen tick: --now {args.now!r} is not an ISO 8601 time", file=sys.stderr)
            return EX_USAGE
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=ctx.tz)
        ctx = replace(ctx, clock=FixedClock(instant))
    print(f"{sweep(ctx)} mail(s) queued at {ctx.local_now().isoformat(timespec='minutes')}")
    return EX_OK


def cmd_search(args: argparse.Namespace, ctx: Context) -> int:
    from store import search
    from store.archive import index_pending

    while index_pending():  # whatever changed since the gateway last had a quiet moment
        pass
    hits = search.search(ctx.db, " ".join(args.words), include_open=args.all, limit=args.limit)
    if args.json:
        _print_json([dict(id=h.ref, archive_key=h.archive_key, status=h.status, snippet=h.snippet) for h in hits])
    else:
        for h in hits:
            print(f"{h.ref:<16} {h.status:<10} {h.archive_key}\n    {h.snippet}")
        if not hits:
            print("no matching record" + ("" if args.all else " in the archive (--all searches open records too)"))
    return EX_OK


def cmd_archive_export(args: argparse.Namespace, ctx: Context) -> int:
    from gateway.report import export_bundle
    from store.models import Record

    record = Record.get_or_none(Record.ref == args.ref.upper())
    if record is None:
        print(f"no record {args.ref}", file=sys.stderr)
        return EX_USAGE
    print(export_bundle(ctx, record, Path(args.out)))
    return EX_OK


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    from gateway.health import report
    from store.db import DATABASE_ERRORS, open_database

    try:
        db = open_database(settings.database_url)
    except (*DATABASE_ERRORS, OSError) as exc:
        status = report(settings, None, error=" ".join(str(exc).split()))
    else:
        status = report(settings, db)
        db.close()
    if args.json:
        _print_json(status)
    else:
        database, spool = status["database"], status["spool"]
        print(f"database: {'reachable' if database['reachable'] else 'UNREACHABLE'} {database['url']}"
              + (f" — {database['error']}" if database["error"] else ""))
        print(f"spool: {spool['waiting_files']} file(s) waiting to be imported"
              + (f", oldest {spool['oldest_seconds']:.0f} s" if spool["oldest_seconds"] is not None else ""))
        if status["inbound"] is None:
            print("inbound, outbox: unknown while the database is unreachable")
        else:
            print("inbound: " + (", ".join(f"{state} {n}" for state, n in sorted(status["inbound"].items()))
                                 or "none"))
            outbox = dict(status["outbox"])
            oldest = outbox.pop("oldest_queued_seconds")
            print("outbox: " + ", ".join(f"{state} {n}" for state, n in outbox.items())
                  + (f"; oldest queued {oldest:.0f} s" if oldest is not None else ""))
    return EX_OK if status["ready"] else EX_TEMPFAIL


def cmd_demo(args: argparse.Namespace, settings: Any) -> int:
    from gateway.demo import run_demo

    return run_demo()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    print()


if __name__ == "__main__":
    sys.exit(main())
