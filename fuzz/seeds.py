#!/usr/bin/env python3
"""Turns loopback captures of Redis traffic into seed files for the fuzz targets, in each target's
input format (see fuzz/src/lib.rs). Run by make_seeds.sh; can be run alone on any pcap:

    seeds.py --port PORT --out fuzz/corpus capture.pcap...

Per capture: every connection's reassembled client and server byte streams (resp_request,
resp_reply), its inline lines (inline), its segments as a reassembly schedule (reassembly), its
interleaved client/server steps (session), and the capture's segments (pipeline). Every seed is
capped at 64 KiB.
"""
import argparse
import os
import struct
import sys
from collections import OrderedDict

CAP = 64 * 1024
TARGETS = ["resp_request", "resp_reply", "inline", "reassembly", "session", "pipeline"]

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def packets(path):
    """(ts_ns, src, dst, seq, flags, payload, ack) for every TCP packet of a pcap (Ethernet, raw IP,
    Linux cooked or BSD loopback)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file (pcapng is not supported here)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        if linktype == 1:  # Ethernet
            if len(pkt) < 14:
                continue
            et = struct.unpack(">H", pkt[12:14])[0]
            ip = pkt[14:]
            while et == 0x8100 and len(ip) >= 4:
                et = struct.unpack(">H", ip[2:4])[0]
                ip = ip[4:]
        elif linktype in (101, 228, 229, 12, 14):  # raw IP
            ip = pkt
            et = 0x0800 if ip and ip[0] >> 4 == 4 else 0x86DD
        elif linktype == 113:  # Linux cooked v1
            et = struct.unpack(">H", pkt[14:16])[0]
            ip = pkt[16:]
        elif linktype == 276:  # Linux cooked v2
            et = struct.unpack(">H", pkt[0:2])[0]
            ip = pkt[20:]
        elif linktype in (0, 108):  # BSD loopback
            ip = pkt[4:]
            et = 0x0800 if ip and ip[0] >> 4 == 4 else 0x86DD
        else:
            continue
        if et == 0x0800:
            if len(ip) < 20 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            src_ip, dst_ip = ip[12:16], ip[16:20]
            tcp = ip[ihl:total]
        elif et == 0x86DD:
            if len(ip) < 40 or ip[6] != 6:
                continue
            plen = struct.unpack(">H", ip[4:6])[0]
            src_ip, dst_ip = ip[8:24], ip[24:40]
            tcp = ip[40:40 + plen]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq, ack = struct.unpack(">HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield ts, (src_ip, sport), (dst_ip, dport), seq, flags, bytes(tcp[doff:]), ack


class Conn:
    def __init__(self):
        self.segs = []  # (ts, dir, seq, flags, payload, ack); dir 0 = client -> server
        self.isn = [None, None]

    def stream(self, d):
        """The reassembled byte stream of direction d (loopback: no loss, maybe duplicates)."""
        base = self.isn[d]
        if base is None:
            firsts = [s[2] for s in self.segs if s[1] == d and s[4]]
            if not firsts:
                return b""
            base = firsts[0]
        buf = bytearray()
        for _ts, sd, seq, _fl, pay, _ack in self.segs:
            if sd != d or not pay:
                continue
            at = (seq - base) & 0xFFFFFFFF
            if at > 1 << 30:
                continue
            if len(buf) < at + len(pay):
                buf.extend(b"\0" * (at + len(pay) - len(buf)))
            buf[at:at + len(pay)] = pay
        return bytes(buf)


def connections(path, port):
    conns = OrderedDict()
    for ts, src, dst, seq, flags, pay, ack in packets(path):
        if dst[1] == port:
            key, d = (src, dst), 0
        elif src[1] == port:
            key, d = (dst, src), 1
        else:
            continue
        c = conns.setdefault(key, Conn())
        if flags & TCP_SYN:
            c.isn[d] = (seq + 1) & 0xFFFFFFFF
        c.segs.append((ts, d, seq, flags, pay, ack))
    return conns


class Out:
    def __init__(self, root):
        self.root = root
        self.n = {t: 0 for t in TARGETS}
        self.seen = set()

    def write(self, target, name, data):
        data = bytes(data[:CAP])
        if (target, data) in self.seen or not data:
            return
        self.seen.add((target, data))
        d = os.path.join(self.root, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(data)
        self.n[target] += 1


# --- per-target encodings (must match fuzz/src/lib.rs) ------------------------------------------


def decoder_seed(stream, cuts=()):
    """flags, op count, ops (pos u16, n u8: 0 = a cut), then the stream."""
    body = stream[:CAP - 2 - 3 * len(cuts)]
    ops = b"".join(struct.pack("<HB", c & 0xFFFF, 0) for c in cuts)
    return bytes([0, len(cuts)]) + ops + body


def inline_seeds(stream):
    """Inline lines of a client stream (mode 0 = split this line)."""
    out = []
    for line in stream.split(b"\n"):
        if line and not line.startswith((b"*", b"$")) and len(line) < 4096:
            out.append(b"\x00" + line.rstrip(b"\r"))
    return out


def multibulk_args(stream):
    """Arguments of the well-formed multibulk commands at the start of a client stream."""
    out, i = [], 0
    while i < len(stream) and stream[i:i + 1] == b"*":
        try:
            e = stream.index(b"\r\n", i)
            n = int(stream[i + 1:e])
            i, args = e + 2, []
            for _ in range(n):
                e = stream.index(b"\r\n", i)
                ln = int(stream[i + 1:e])
                args.append(stream[e + 2:e + 2 + ln])
                i = e + 4 + ln
            out.append(args)
        except ValueError:
            break
    return out


def roundtrip_seed(args, style):
    """Mode 1: arguments to quote (ctl = quoting style | separator << 2, len u8), then split."""
    out = bytearray([1])
    for a in args:
        a = a[:255]
        out += bytes([style, len(a)]) + a
    return bytes(out)


def reassembly_seed(conn, d):
    """The direction's real segments (offsets from its start) over its stream, in capture order."""
    stream = conn.stream(d)
    base = conn.isn[d]
    segs = [s for s in conn.segs if s[1] == d and s[4]]
    if not segs or not stream:
        return None
    if base is None:
        base = segs[0][2]
    data = stream[:CAP - 256 * 7 - 16]
    ops = []
    for _ts, _d, seq, _fl, pay, _ack in segs:
        at = (seq - base) & 0xFFFFFFFF
        if at >= len(data) or len(ops) == 255:
            break
        cap = min(len(pay), len(data) - at)
        ops.append(struct.pack("<HHHB", at, cap, 0, 1))
    # flags: set the ISN; ISN; generous limits (255 = 1 MiB, 255 pieces, no hold limit).
    head = struct.pack("<BIBBB", 1, base, 255, 255, 0)
    return head + bytes([len(ops)]) + b"".join(ops) + data


def session_seed(conn):
    """The connection's payloads, interleaved as captured: tag (dir | ts step << 3), len u16."""
    out = bytearray([0])
    last = None
    for ts, d, _seq, _fl, pay, _ack in conn.segs:
        if not pay:
            continue
        step = 0 if last is None else min(31, max(0, (ts - last) // 1000))
        last = ts
        for i in range(0, len(pay), 0xFFFF):
            piece = pay[i:i + 0xFFFF]
            if len(out) + 3 + len(piece) > CAP:
                return bytes(out)
            out += bytes([d | (step << 3)]) + struct.pack("<H", len(piece)) + piece
            step = 0
    return bytes(out)


def pipeline_seed(conns):
    """All segments of the capture: ctl (flow | dir << 2), flags, seq, ack, len, missing, ts
    step."""
    index = {k: i % 4 for i, k in enumerate(conns)}
    segs = sorted(
        ((ts, index[k], d, seq, fl, pay, ack)
         for k, c in conns.items() for ts, d, seq, fl, pay, ack in c.segs),
        key=lambda s: s[0],
    )
    out = bytearray([0])
    last = None
    for ts, flow, d, seq, fl, pay, ack in segs:
        step = 0 if last is None else min(255, max(0, (ts - last) // 10_000_000))
        last = ts
        pay = pay[:0xFFFF]
        rec = bytes([flow | (d << 2), fl]) + struct.pack("<IIHHB", seq, ack, len(pay), 0, step) + pay
        if len(out) + len(rec) > CAP:
            break
        out += rec
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("pcaps", nargs="+")
    a = ap.parse_args()
    for t in TARGETS:
        d = os.path.join(a.out, t)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("seed-"):
                    os.remove(os.path.join(d, f))
    out = Out(a.out)
    for path in a.pcaps:
        name = os.path.splitext(os.path.basename(path))[0]
        conns = connections(path, a.port)
        # redis-benchmark opens 50 alike connections per test: one of each is enough.
        keep, firsts = [], set()
        for k, c in conns.items():
            first = c.stream(0)[:48]
            if name != "benchmark" or (first and first not in firsts):
                firsts.add(first)
                keep.append((k, c))
        for i, (_k, c) in enumerate(keep):
            req, rep = c.stream(0), c.stream(1)
            tag = f"{name}-{i}"
            out.write("resp_request", tag, decoder_seed(req))
            out.write("resp_reply", tag, decoder_seed(rep))
            for j, line in enumerate(inline_seeds(req)):
                out.write("inline", f"{tag}-{j}", line)
            for j, args in enumerate(multibulk_args(req)[:8]):
                out.write("inline", f"{tag}-rt{j}", roundtrip_seed(args, j % 3))
            for d, side in ((0, "req"), (1, "rep")):
                s = reassembly_seed(c, d)
                if s:
                    out.write("reassembly", f"{tag}-{side}", s)
            out.write("session", tag, session_seed(c))
        out.write("pipeline", name, pipeline_seed(conns))
    for t in TARGETS:
        print(f"{t}: {out.n[t]} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
