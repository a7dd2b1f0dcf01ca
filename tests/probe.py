"""Traffic endpoint run inside network namespaces by tests/lab.py (standard library only).

serve:   listen on --addr/--port and answer every client with the peer address it saw, so a
         test can assert which source address (after any NAT) actually arrived.
connect: talk to such a server and print the address it reported; exit 1 (nothing on stdout)
         when the path is blocked, refused or times out, always within --timeout.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import sys
import time

READY = "READY"
EXIT_UNSUPPORTED = 3  # the kernel lacks the protocol (e.g. no SCTP module)
SOL_IP = 0
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # missing from some Python builds
IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex
CMSG_SPACE = socket.CMSG_SPACE(IN6_PKTINFO.size) + socket.CMSG_SPACE(IN_PKTINFO.size)


class Args:
    """Parsed command line (a plain class: dataclasses costs 20 ms of start-up)."""

    def __init__(self, cmd: str, values: dict[str, str | None]) -> None:
        self.cmd = cmd
        self.port = int(values["port"] or 0)
        self.proto = values["proto"] or "tcp"
        self.addr = values.get("addr") or "::"
        self.dst = values.get("dst") or ""
        self.timeout = float(values.get("timeout") or 1.5)
        self.src = values.get("src")


def family_of(addr: str) -> socket.AddressFamily:
    """AF_INET or AF_INET6 for a literal address (no ipaddress import: start-up time)."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def plain(addr: str) -> str:
    """Peer address as a test wants to compare it: IPv4-mapped IPv6 unmapped to IPv4."""
    if addr.lower().startswith("::ffff:") and "." in addr:
        return addr[len("::ffff:") :]
    return addr


def socktype(proto: str) -> tuple[socket.SocketKind, int]:
    """Socket type and protocol number for tcp/udp/sctp."""
    return {
        "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
        "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
        "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
    }[proto]


def new_socket(family: socket.AddressFamily, proto: str) -> socket.socket:
    """Create a socket; exit EXIT_UNSUPPORTED if the kernel lacks the protocol."""
    kind, number = socktype(proto)
    try:
        return socket.socket(family, kind, number)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            print(f"unsupported: {proto}/{family.name}: {exc}", file=sys.stderr)
            sys.exit(EXIT_UNSUPPORTED)
        raise


def listen_socket(addr: str, port: int, proto: str) -> socket.socket:
    """Bound server socket; '::' listens dual-stack so one server sees IPv4 and IPv6 clients."""
    sock = new_socket(family_of(addr), proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if addr == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if proto == "udp":
        enable_pktinfo(sock)
    sock.bind((addr, port))
    if proto != "udp":
        sock.listen(64)
    return sock


def enable_pktinfo(sock: socket.socket) -> None:
    """Ask for each datagram's destination address so replies can leave from it."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(SOL_IP, IP_PKTINFO, 1)  # also reports IPv4 on a dual-stack socket


def reply_cmsg(ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Source-address control message for a UDP reply, mirroring the request's destination.

    Without it a multi-homed server answers from the routing-chosen address, and the
    connected client socket silently discards the reply.
    """
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            addr, _ = IN6_PKTINFO.unpack(data[: IN6_PKTINFO.size])
            return [(level, kind, IN6_PKTINFO.pack(addr, 0))]
        if level == SOL_IP and kind == IP_PKTINFO:
            _, spec_dst, _ = IN_PKTINFO.unpack(data[: IN_PKTINFO.size])
            return [(level, kind, IN_PKTINFO.pack(0, spec_dst, bytes(4)))]
    return []


def serve_stream(sock: socket.socket) -> None:
    """Tell each client its address, then close (the client sends nothing)."""
    while True:
        conn, peer = sock.accept()
        with conn:
            send_line(conn, plain(peer[0]))


def send_line(conn: socket.socket, line: str) -> None:
    """Send one line, ignoring a client that already gave up."""
    try:
        conn.sendall(f"{line}\n".encode())
    except OSError as exc:
        print(f"send failed: {exc}", file=sys.stderr)


def serve_dgram(sock: socket.socket) -> None:
    """Answer every datagram with its sender's address, from the address it was sent to."""
    while True:
        _, ancdata, _, peer = sock.recvmsg(2048, CMSG_SPACE)
        try:
            sock.sendmsg([f"{plain(peer[0])}\n".encode()], reply_cmsg(ancdata), 0, peer)
        except OSError as exc:
            print(f"reply to {peer} failed: {exc}", file=sys.stderr)


def serve(args: Args) -> None:
    """Bind, announce readiness on stdout (the Lab waits for it), then serve forever."""
    sock = listen_socket(args.addr, args.port, args.proto)
    print(READY, flush=True)
    if args.proto == "udp":
        serve_dgram(sock)
    else:
        serve_stream(sock)


def client_socket(args: Args) -> socket.socket:
    """Client socket, optionally bound to --src so a test can pick the source address."""
    sock = new_socket(family_of(args.dst), args.proto)
    if args.src:
        sock.bind((args.src, 0))
    return sock


def connect_stream(sock: socket.socket, args: Args, deadline: float) -> str:
    """Connect and read the reported address until EOF."""
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    sock.connect((args.dst, args.port))
    data = b""
    while b"\n" not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def connect_dgram(sock: socket.socket, args: Args, deadline: float) -> str:
    """Send a datagram every 250 ms (a lost one must not fail the probe) until answered."""
    sock.connect((args.dst, args.port))
    while (left := deadline - time.monotonic()) > 0:
        sock.send(b"?\n")
        ready, _, _ = select.select([sock], [], [], min(left, 0.25))
        if ready:
            return sock.recv(256).decode().strip()
    raise TimeoutError("no reply")


def connect(args: Args) -> int:
    """Print the address the server saw; exit 1 with the reason on stderr if it is unreachable."""
    deadline = time.monotonic() + args.timeout
    try:
        with client_socket(args) as sock:
            talk = connect_dgram if args.proto == "udp" else connect_stream
            answer = talk(sock, args, deadline)
    except (OSError, TimeoutError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not answer:
        print("empty answer", file=sys.stderr)
        return 1
    print(answer)
    return 0


USAGE = """usage: probe.py serve --port N [--proto tcp|udp|sctp] [--addr A]
       probe.py connect --dst A --port N [--proto P] [--timeout T] [--src S]"""
OPTIONS: dict[str, dict[str, str | None]] = {
    "serve": {"port": None, "proto": "tcp", "addr": "::"},
    "connect": {"port": None, "proto": "tcp", "dst": None, "timeout": "1.5", "src": None},
}


def parse(argv: list[str]) -> Args:
    """Command line: serve | connect, then --name value pairs (argparse costs 20 ms per run)."""
    if not argv or argv[0] not in OPTIONS or len(argv) % 2 == 0:
        raise SystemExit(USAGE)
    values = dict(OPTIONS[argv[0]])
    for flag, value in zip(argv[1::2], argv[2::2], strict=True):
        name = flag.removeprefix("--")
        if not flag.startswith("--") or name not in values:
            raise SystemExit(f"unknown option {flag}\n{USAGE}")
        values[name] = value
    missing = [name for name, value in values.items() if value is None and name != "src"]
    if missing or values["proto"] not in ("tcp", "udp", "sctp"):
        raise SystemExit(USAGE)
    return Args(argv[0], values)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.cmd == "serve":
        serve(args)
        return 0
    return connect(args)


if __name__ == "__main__":
    sys.exit(main())
