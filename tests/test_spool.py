"""The spool between SMTP's 250 and the database, and the processor that empties it: group
commit, damaged files, files of the older format, a processor whose waker is gone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from conftest import DOMAIN, PROJECT_BODY, crlf, make_mail, spool_mail, wait_idle, wait_processed

from gateway.serve import GatewayThread
from gateway.spool import Spool, SpooledMail, SpoolWriter, new_queue_id
from store.models import InboundMessage, Record

AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


class _HeldSpool(Spool):
    """A spool whose first write waits until released, as a slow disk would."""

    def __init__(self, folder):
        super().__init__(folder)
        self.started, self.release = threading.Event(), threading.Event()
        self.files: list[list[str]] = []

    def write_file(self, mails: list[SpooledMail]) -> str:
        if not self.files:
            self.started.set()
            self.release.wait(10)
        self.files.append([m.queue_id for m in mails])
        return super().write_file(mails)


def test_mails_arriving_during_a_write_share_the_next_file(tmp_path):
    spool = _HeldSpool(tmp_path / "spool")
    woken = []
    writer = SpoolWriter(spool, lambda: woken.append(1))

    async def main() -> list[str]:
        first = asyncio.ensure_future(writer.store(b"Subject: 1\r\n\r\none\r\n", "a@example.cn", [f"project@{DOMAIN}"], AT))
        await asyncio.get_running_loop().run_in_executor(None, spool.started.wait, 10)
        later = [asyncio.ensure_future(writer.store(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), "b@example.cn",
                                                    [f"customer@{DOMAIN}"], AT)) for i in (2, 3, 4)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in [first, *later])  # nobody hears 250 before the fsync
        spool.release.set()
        return await asyncio.gather(first, *later)

    queue_ids = asyncio.run(main())
    writer.close()
    assert len(set(queue_ids)) == 4
    assert spool.files == [queue_ids[:1], queue_ids[1:]]  # two writes (two fsync pairs) for four mails
    assert len(woken) == 2
    stored = [m for name in spool.pending() for m in spool.read(name)]
    assert [m.queue_id for m in stored] == queue_ids
    assert stored[2].raw == b"Subject: 3\r\n\r\nbody 3\r\n"
    assert stored[3].envelope_from == "b@example.cn" and stored[3].envelope_to == [f"customer@{DOMAIN}"]
    assert stored[0].received_at == AT


def test_a_damaged_spool_file_is_set_aside_and_the_mail_behind_it_processed(ctx):
    spool = Spool(ctx.settings.data_path / "spool")
    spool_mail(ctx, b"Subject: x\r\n\r\nbody\r\n", "a@example.cn", [f"project@{DOMAIN}"])
    [damaged] = spool.pending()
    (spool.new / damaged).write_bytes((spool.new / damaged).read_bytes()[:-3])  # a torn file
    queue_id = spool_mail(ctx, crlf(make_mail(PROJECT_BODY)), "chen.jing@liuhen.localhost", [f"project@{DOMAIN}"])
    running = GatewayThread(ctx, transport=None).start()
    try:
        assert wait_processed(queue_id).state == "processed"
        wait_idle(ctx)
    finally:
        running.stop()
    assert (spool.new.parent / "damaged" / damaged).exists()
    assert Record.select().count() == 1 and InboundMessage.select().count() == 1


def test_a_file_spooled_by_the_one_mail_per_file_format_is_still_read(ctx):
    spool = Spool(ctx.settings.data_path / "spool")
    envelope = {"from": "chen.jing@liuhen.localhost", "to": [f"project@{DOMAIN}"], "at": AT.isoformat()}
    (spool.new / "17F00000000ABCDEF").write_bytes(json.dumps(envelope).encode() + b"\n" + crlf(make_mail(PROJECT_BODY)))
    running = GatewayThread(ctx, transport=None).start()
    try:
        row = wait_processed("17F00000000ABCDEF")
    finally:
        running.stop()
    assert row.state == "processed" and row.envelope_from == "chen.jing@liuhen.localhost"


def test_a_failing_wake_up_does_not_stop_intake(tmp_path):
    def broken_wake() -> None:
        raise BrokenPipeError("the processor is gone")

    writer = SpoolWriter(Spool(tmp_path / "spool"), broken_wake)

    async def main() -> list[str]:
        return [await writer.store(f"Subject: {i}\r\n\r\nx\r\n".encode(), "a@example.cn", [f"project@{DOMAIN}"], AT)
                for i in range(3)]

    queue_ids = asyncio.run(asyncio.wait_for(main(), 10))  # each mail still hears its answer
    writer.close()
    assert len(set(queue_ids)) == 3


def test_the_processor_stops_when_the_process_that_wakes_it_is_gone(ctx):
    import multiprocessing

    from gateway.processor import processor_loop

    receive, send = multiprocessing.Pipe(duplex=False)
    loop = threading.Thread(target=processor_loop, args=(ctx, Spool(ctx.settings.data_path / "spool"), receive))
    loop.start()
    send.close()  # as when `liuhen serve` is killed: the processor child must not linger
    loop.join(10)
    assert not loop.is_alive()


def test_files_left_in_tmp_by_an_ended_process_are_removed_at_start_but_not_a_write_in_progress(tmp_path):
    spool = Spool(tmp_path / "spool")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    torn = spool.tmp / f"{new_queue_id()}.{ended.pid}"  # a write cut short when its process was killed
    torn.write_bytes(b'{"mails": [{"id": "17F0')
    old_format = spool.tmp / "17F00000000ABCDEF"  # named without a pid, an hour old
    old_format.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(old_format, (an_hour_ago, an_hour_ago))
    # Another process writing now, as the processor child (which opens the spool too) may be.
    being_written = spool.tmp / f"{new_queue_id()}.{os.getppid()}"
    being_written.write_bytes(b"{}")
    Spool(tmp_path / "spool")
    assert list(spool.tmp.iterdir()) == [being_written]
    assert spool.pending() == []


def test_search_indexing_waits_while_mail_is_going_out_and_catches_up_after(ctx):
    import multiprocessing

    from gateway.children import STOP
    from gateway.processor import processor_loop
    from store.models import SearchPending

    delivering = threading.Event()
    delivering.set()  # a burst of mail is being delivered
    spool_mail(ctx, make_mail(PROJECT_BODY), f"chen.jing@{DOMAIN}",
               [f"project@{DOMAIN}"])
    receive, send = multiprocessing.Pipe(duplex=False)
    loop = threading.Thread(target=processor_loop, args=(ctx, Spool(ctx.settings.data_path / "spool"), receive),
                            kwargs={"delivering": delivering.is_set})
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while Record.select().count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Record.select().count() == 1  # the mail itself is not held back
        time.sleep(1.5)  # three looks at whether indexing may go on
        assert SearchPending.select().count() == 1
        delivering.clear()
        deadline = time.monotonic() + 10
        while SearchPending.select().count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert SearchPending.select().count() == 0
    finally:
        send.send_bytes(STOP)
        loop.join(10)
