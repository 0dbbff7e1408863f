"""A small authoritative DNS server on 127.0.0.1 for dns-01 tests, built on dnslib.

It answers TXT queries from a JSON file ({"name.": ["value", ...]}) that it re-reads on every
query, so that processes other than the test (certbot's --manual-auth-hook scripts) can add
and remove records while it runs; A/AAAA queries for any name answer 127.0.0.1 / ::1, other
names and types NXDOMAIN / no data. It listens on UDP and TCP on the same free port (dnspython
retries over TCP when an answer is truncated).

    with LocalDNS(tmp_path / "zone.json") as dns:
        dns.add_txt("_acme-challenge.example.test", "token")
        settings.ACME_DNS_RESOLVER = dns.address          # "127.0.0.1:PORT"

The hook scripts change the same file from the command line:

    python -m tests.helpers.dns ZONE add NAME VALUE
    python -m tests.helpers.dns ZONE remove NAME VALUE
"""

from __future__ import annotations

import fcntl
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from dnslib import AAAA, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

#: Seconds a test resolver may cache an answer: none, so a changed record is seen at once.
TTL = 0


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


@contextmanager
def _locked(zone: Path):
    """The zone file, locked against the other writers (hook scripts run one per name)."""
    lock = zone.with_suffix(zone.suffix + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_zone(zone: Path) -> dict[str, list[str]]:
    """The TXT records in the zone file ({} when it does not exist yet)."""
    try:
        return json.loads(zone.read_text() or "{}")
    except FileNotFoundError:
        return {}


def change_txt(zone: Path, name: str, value: str, *, add: bool) -> None:
    """Add a TXT value to a name, or remove it (atomically: written aside, then renamed)."""
    with _locked(zone):
        records = read_zone(zone)
        values = records.setdefault(_fqdn(name), [])
        if add and value not in values:
            values.append(value)
        elif not add and value in values:
            values.remove(value)
        if not values:
            del records[_fqdn(name)]
        partial = zone.with_suffix(zone.suffix + ".tmp")
        partial.write_text(json.dumps(records, indent=1))
        partial.replace(zone)


class ZoneResolver(BaseResolver):
    """Answers from the zone file, read afresh on every query."""

    def __init__(self, zone: Path):
        self.zone = zone
        self.queries: list[tuple[str, str]] = []  # (name, type), for tests that want to know

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        records = read_zone(self.zone)
        if qtype == "TXT":
            if name not in records:
                reply.header.rcode = RCODE.NXDOMAIN
            for value in records.get(name, []):
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(value), ttl=TTL))
        elif qtype == "A":
            reply.add_answer(RR(name, QTYPE.A, rdata=A("127.0.0.1"), ttl=TTL))
        elif qtype == "AAAA":
            reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA("::1"), ttl=TTL))
        return reply


class _QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-data,-recv,-send", prefix=False)


class LocalDNS:
    """The zone file's TXT records, served on UDP and TCP on one free port of 127.0.0.1."""

    def __init__(self, zone: Path):
        self.zone = Path(zone)
        self.resolver = ZoneResolver(self.zone)
        self.port: int | None = None
        self._servers: list[DNSServer] = []

    @property
    def address(self) -> str:
        """host:port, the form ACME_DNS_RESOLVER takes."""
        return f"127.0.0.1:{self.port}"

    def add_txt(self, name: str, value: str) -> None:
        change_txt(self.zone, name, value, add=True)

    def remove_txt(self, name: str, value: str) -> None:
        change_txt(self.zone, name, value, add=False)

    def txt(self, name: str) -> list[str]:
        return read_zone(self.zone).get(_fqdn(name), [])

    def start(self) -> LocalDNS:
        if not self.zone.exists():
            self.zone.write_text("{}")
        # UDP takes a free port; TCP then binds the same number, which another process may
        # hold: try again with another port a few times.
        for _attempt in range(20):
            udp = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self.resolver,
                    address="127.0.0.1",
                    port=port,
                    tcp=True,
                    logger=_QuietLogger(),
                )
            except OSError:
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:
                server.start_thread()
            return self
        raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> LocalDNS:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def query_txt(address: str, name: str, *, tcp: bool = False) -> list[str]:
    """Ask a server (host:port) for a name's TXT values, over UDP or TCP, with dnslib."""
    host, port = address.rsplit(":", 1)
    packet = DNSRecord.question(name, "TXT").send(host, int(port), tcp=tcp, timeout=5)
    reply = DNSRecord.parse(packet)
    return [b"".join(rr.rdata.data).decode() for rr in reply.rr if rr.rtype == QTYPE.TXT]


def main(argv: list[str]) -> int:
    """`ZONE add|remove NAME VALUE`: what a certbot manual hook runs."""
    if len(argv) != 4 or argv[1] not in ("add", "remove"):
        print("usage: python -m tests.helpers.dns ZONE add|remove NAME VALUE", file=sys.stderr)
        return 2
    zone, action, name, value = argv
    change_txt(Path(zone), name, value, add=action == "add")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
