"""Who sent a mail, as far as we can tell: pass, fail or none — with the evidence.

Two sources, never mixed:

- **Our own MX** (``[security] trusted_authserv_id``): its Authentication-Results header
  (RFC 8601, parsed with `authres`, not by regular expressions). Only the topmost headers
  carrying its authserv-id count — anything below may have been written by the sender — and
  only when the mail reached us through that MX: piped by it, read from its IMAP mailbox, or
  sent over SMTP from one of ``trusted_relays`` (our own Received line names the client).
- **Our own check** otherwise: DKIM signatures and the sender domain's DMARC policy, looked up
  in DNS (dkimpy and authheaders).

The verdict follows DMARC, as Discourse's receiver does: dmarc=fail is fail, dmarc=pass is
pass, anything else is none. Without a DMARC policy, a valid DKIM signature of the From
domain (or its parent) still counts as pass. The verdict is stored with the inbound mail.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import TYPE_CHECKING

import authheaders
import authres
import dns.exception
import dns.resolver

from store.repositories import record_authentication

if TYPE_CHECKING:
    from gateway.bootstrap import Context
    from parsers.mime import ParsedMessage
    from store.models import InboundMessage

log = logging.getLogger(__name__)

# The client our SMTP intake names in the Received line it adds on top (gateway/smtp.py).
OUR_RECEIVED = re.compile(r"^from\s+\S*\s*\(\S*\s*\[(?P<ip>[0-9A-Fa-f:.]+)\]\)\s+by\s+(?P<by>\S+)\s+\(liuhen\)")


@dataclass(frozen=True)
class Verdict:
    result: str  # pass | fail | none
    method: str  # trusted-mta | dkim-dmarc | off
    domain: str = ""  # the From domain the verdict is about
    evidence: str = ""  # the Authentication-Results that decided it

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    def as_json(self) -> dict:
        return dict(result=self.result, method=self.method, domain=self.domain, evidence=self.evidence[:2000])


DnsLookup = Callable[..., "bytes | str | None"]
_dns: DnsLookup | None = None  # tests put a stub with their own zone here


def _dns_lookup(timeout: float) -> DnsLookup:
    global _dns
    if _dns is None:
        _dns = SystemDns(timeout)
    return _dns


class SystemDns:
    """TXT lookups through the system resolver, bounded in time and cached for a while, in
    the two shapes the libraries ask for (dkimpy: bytes in and out; authheaders: str)."""

    TTL_SECONDS = 300.0

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._cache: dict[str, tuple[float, str | None]] = {}

    def __call__(self, name: bytes | str, timeout: float | None = None) -> bytes | str | None:
        as_bytes = isinstance(name, bytes)
        key = (name.decode("ascii", "replace") if isinstance(name, bytes) else name).rstrip(".").lower()
        cached = self._cache.get(key)
        if cached is None or cached[0] < time.monotonic():
            cached = (time.monotonic() + self.TTL_SECONDS, self._txt(key))
            self._cache[key] = cached
        value = cached[1]
        if value is None:
            return None
        return value.encode("utf-8") if as_bytes else value

    def _txt(self, name: str) -> str | None:
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=self.timeout, raise_on_no_answer=False)
        except (dns.exception.DNSException, ValueError) as exc:
            log.info("DNS TXT %s: %s", name, exc)
            return None
        for rrset in answer.response.answer:
            for item in rrset:
                return b"".join(getattr(item, "strings", ())).decode("utf-8", "replace")
        return None


def sender_verdict(ctx: Context, row: InboundMessage, msg: ParsedMessage) -> Verdict:
    """The verdict for a stored mail: computed once, kept with the mail."""
    if row.auth and row.auth.get("result"):
        stored = row.auth
        return Verdict(stored["result"], stored.get("method", ""), stored.get("domain", ""), stored.get("evidence", ""))
    verdict = authenticate(ctx, bytes(row.raw), row.source, msg.from_addr)
    record_authentication(row.id, verdict.as_json())
    row.auth = verdict.as_json()
    return verdict


def authenticate(ctx: Context, raw: bytes, source: str, from_addr: str) -> Verdict:
    security = ctx.settings.security
    domain = from_addr.rpartition("@")[2]
    try:
        if security.trusted_authserv_id:
            return _trusted_mta(raw, source, security.trusted_authserv_id, security.trusted_relays, domain)
        if not security.check_dkim:
            return Verdict("none", "off", domain, "sender authentication is switched off")
        return _own_check(raw, domain, _dns_lookup(security.dns_timeout_seconds))
    except Exception as exc:  # a verdict never stops a mail: unknown is "none"
        log.warning("sender authentication failed for a mail from %s: %s", from_addr, exc)
        return Verdict("none", "error", domain, f"could not be checked: {exc}"[:300])


def _trusted_mta(raw: bytes, source: str, authserv_id: str, relays: tuple[str, ...], domain: str) -> Verdict:
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    if source == "smtp" and not _from_trusted_relay(headers.get_all("received") or [], relays):
        return Verdict("none", "trusted-mta", domain,
                       "not received from the trusted MX: its Authentication-Results are not trusted")
    ours: list = []
    for name, value in headers.items():
        name = name.lower()
        if name == "received":
            if ours:
                break  # a hop further down: what lies below may have been written by the sender
            continue
        if name != "authentication-results":
            continue
        try:
            parsed = authres.all_features().parse_value(" ".join(str(value).split()))
        except authres.AuthResError:
            parsed = None
        if parsed is not None and str(parsed.authserv_id).lower() == authserv_id.lower():
            ours.append(parsed)
        elif ours:
            break  # only the topmost block of our MX's headers counts
    if not ours:
        return Verdict("none", "trusted-mta", domain, f"no Authentication-Results from {authserv_id}")
    return _decide(ours, domain, "trusted-mta")


def _from_trusted_relay(received: list, relays: tuple[str, ...]) -> bool:
    if not received:
        return False
    found = OUR_RECEIVED.match(" ".join(str(received[0]).split()))
    if not found:
        return False
    try:
        client = ipaddress.ip_address(found.group("ip"))
        return any(client in ipaddress.ip_network(net, strict=False) for net in relays)
    except ValueError:
        return False


MAX_FROM_HEADER = 2000  # characters: a From header longer than this names no single sender


def _own_check(raw: bytes, domain: str, dnsfunc: DnsLookup) -> Verdict:
    senders = _from_addresses(raw)
    if senders != 1:
        # RFC 7489 §6.6.1: a mail whose From names several authors (or none) has no one
        # domain to check; authheaders would check each in turn (14,000 took 30 s).
        return Verdict("fail", "dkim-dmarc", domain, "the From header does not name exactly one address")
    header = authheaders.authenticate_message(raw, "liuhen", spf=False, dkim=True, dmarc=True, dnsfunc=dnsfunc)
    return _decide([authres.all_features().parse(header)], domain, "dkim-dmarc")


def _from_addresses(raw: bytes) -> int:
    """How many addresses the From header(s) name (capped at 2: one is all that matters)."""
    values = [str(v) for v in BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("from") or []]
    if len(values) != 1:
        return min(len(values), 2)
    if len(values[0]) > MAX_FROM_HEADER:
        return 2
    return min(len([a for _, a in getaddresses(values) if a]), 2)


def _decide(headers: list, domain: str, method: str) -> Verdict:
    evidence = "; ".join(str(h) for h in headers)
    results = [r for h in headers for r in h.results]
    dmarc = [str(r.result).lower() for r in results if str(r.method).lower() == "dmarc"]
    if "fail" in dmarc:
        return Verdict("fail", method, domain, evidence)
    if "pass" in dmarc:
        return Verdict("pass", method, domain, evidence)
    for r in results:
        if str(r.method).lower() == "dkim" and str(r.result).lower() == "pass" and _aligned(_dkim_domain(r), domain):
            return Verdict("pass", method, domain, evidence)
    return Verdict("none", method, domain, evidence)


def _dkim_domain(result: object) -> str:
    return str(getattr(result, "header_d", "") or "").lower()


def _aligned(signer: str, domain: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1.1) without a public-suffix list: the signing domain is
    the From domain or a parent of it with at least two labels."""
    signer, domain = signer.strip(".").lower(), domain.strip(".").lower()
    return bool(signer) and signer.count(".") >= 1 and (domain == signer or domain.endswith("." + signer))
