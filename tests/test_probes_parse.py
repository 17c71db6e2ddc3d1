"""The probes' pure parts: HTTP bytes, TCP_INFO bytes, ICMP bytes, records and arguments."""

from __future__ import annotations

import json
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.errors import InfraError, InputError, UsageError
from rig.probes.runner import DEFAULT_KINDS
from rig.probes import PROBE_KINDS, ProbeResult, TcpState, parse_kinds, read_jsonl, run_probes, write_jsonl
from rig.probes import httpwire
from rig.probes.http import body_check
from rig.probes.icmp import (DEST_UNREACH, ECHO_REPLY, build_echo, checksum, echo_payload, parse_icmp)
from rig.probes.records import (MSG_TOO_LONG, REFUSED, TCP_INFO_LEN, TIMED_OUT, error_phrase, make_nonce,
                                parse_tcp_info, tcp_state)

# --- HTTP -------------------------------------------------------------------------------

APACHE_200 = (b"HTTP/1.1 200 OK\r\n"
              b"Date: Thu, 26 Nov 2026 09:00:00 GMT\r\n"
              b"Server: Apache/2.4.62 (Debian)\r\n"
              b"Cache-Control: no-store\r\n"
              b"Content-Length: 27\r\n"
              b"Content-Type: text/html\r\n"
              b"Connection: close\r\n\r\n"
              b"<p>rig responder abc123</p>")

SQUID_HIT = (b"HTTP/1.1 200 OK\r\n"
             b"Server: Apache\r\n"
             b"Age: 310\r\n"
             b"X-Cache: HIT from proxy.example\r\n"
             b"X-Cache-Lookup: HIT from proxy.example:3128\r\n"
             b"Via: 1.1 proxy.example (squid/5.7)\r\n"
             b"Content-Length: 12\r\n\r\n"
             b"It works!\n\n\n")

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")


def test_apache_response():
    r = httpwire.parse_response(APACHE_200)
    assert (r.status, r.head.reason, r.head.version) == (200, "OK", "HTTP/1.1")
    assert r.head.get("SERVER") == "Apache/2.4.62 (Debian)"
    assert r.body == b"<p>rig responder abc123</p>" and r.complete
    assert r.proxy_headers() == {}
    assert body_check(r.body, "abc123") and body_check(b"rig responder", "zzz")
    assert not body_check(b"It works!", "abc123")


def test_proxy_headers_are_reported():
    r = httpwire.parse_response(SQUID_HIT)
    assert set(r.proxy_headers()) == {"age", "x-cache", "x-cache-lookup", "via"}
    assert r.complete and r.status == 200


def test_chunked_body():
    r = httpwire.parse_response(CHUNKED)
    assert r.body == b"hello, world" and r.complete
    cut = httpwire.parse_response(CHUNKED[:-7], eof=True)
    assert cut.body == b"hello, world" and not cut.complete


def test_body_cut_short_is_incomplete_not_guessed():
    r = httpwire.parse_response(APACHE_200[:-5], eof=True)
    assert not r.complete and len(r.body) == 22 and r.wire_body_len == 22


def test_no_length_body_ends_at_eof():
    data = b"HTTP/1.0 200 OK\r\n\r\nabc"
    assert httpwire.parse_response(data, eof=False).complete is False
    assert httpwire.parse_response(data, eof=True).complete is True


def test_bare_lf_and_bodiless_statuses():
    r = httpwire.parse_response(b"HTTP/1.1 304 Not Modified\nETag: x\n\n")
    assert r.status == 304 and r.complete and r.body == b""
    assert httpwire.parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").complete


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x16\x03\x01\x00\xa5",  # a TLS record
    b"HTTP/1.1 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_not_http_is_malformed(data):
    with pytest.raises(httpwire.MalformedResponse):
        httpwire.parse_response(data)


def test_head_not_complete_yet():
    assert httpwire.split_head(b"HTTP/1.1 200 OK\r\nServer: x\r\n") is None
    assert httpwire.split_head(b"HTT") is None
    with pytest.raises(httpwire.MalformedResponse, match="incomplete"):
        httpwire.parse_response(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(httpwire.MalformedResponse, match="no end of headers"):
        httpwire.split_head(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000)


def test_request_busts_caches_and_names_no_proxy():
    req = httpwire.build_request("198.51.100.10", "/rig/n/rig-t-http-1-0a1b2c3d").decode()
    lines = req.split("\r\n")
    assert lines[0] == "GET /rig/n/rig-t-http-1-0a1b2c3d HTTP/1.1"  # origin form: not a proxy request
    assert "Host: 198.51.100.10" in lines
    assert "Cache-Control: no-cache, no-store" in lines and "Pragma: no-cache" in lines
    assert "Connection: close" in lines and req.endswith("\r\n\r\n")
    with pytest.raises(ValueError):
        httpwire.build_request("h", "/a b")


@given(body=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=4000))
def test_content_length_completeness_property(body, cut):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    head_len = data.index(b"\r\n\r\n") + 4
    part = data[:head_len + cut]
    r = httpwire.parse_response(part, eof=False)
    assert r.complete == (cut >= len(body))
    assert r.body == body[:cut]


@given(chunks=st.lists(st.binary(min_size=1, max_size=200), max_size=8))
def test_dechunk_roundtrip(chunks):
    wire = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    assert httpwire.dechunk(wire) == (b"".join(chunks), True)
    assert httpwire.dechunk(wire[:-5])[1] is False


# --- TCP_INFO ---------------------------------------------------------------------------

def fake_tcp_info(state: int, retransmits: int, opts: int, wscale: int, **u32: int) -> bytes:
    names = ("rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
             "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh",
             "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space",
             "total_retrans")
    head = struct.pack("=8B", state, 0, retransmits, 0, 0, opts, wscale, 0)
    return head + struct.pack("=24I", *(u32.get(n, 0) for n in names)) + b"\0" * 128


def test_tcp_info_syn_sent():
    st_ = parse_tcp_info(fake_tcp_info(2, 2, 0, 0, total_retrans=2, snd_mss=536, pmtu=1500))
    assert st_ == TcpState(state="SYN_SENT", retransmits=2, total_retrans=2, rtt_us=0, snd_mss=536,
                           rcv_mss=0, pmtu=1500, options=(), snd_wscale=0, rcv_wscale=0)


def test_tcp_info_established_with_options():
    st_ = parse_tcp_info(fake_tcp_info(1, 0, 1 | 2 | 4, 0x7A, rtt=1234, snd_mss=1414, rcv_mss=1414, pmtu=1454))
    assert st_.state == "ESTABLISHED" and st_.options == ("timestamps", "sack", "wscale")
    assert (st_.snd_wscale, st_.rcv_wscale, st_.rtt_us, st_.snd_mss, st_.pmtu) == (10, 7, 1234, 1414, 1454)


def test_tcp_info_too_short():
    with pytest.raises(ValueError):
        parse_tcp_info(b"\x01" * (TCP_INFO_LEN - 1))


def test_tcp_info_from_a_real_loopback_socket():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=2)
    conn, _ = srv.accept()
    try:
        got = tcp_state(c)
        assert got is not None and got.state == "ESTABLISHED" and got.snd_mss > 0
        assert tcp_state(srv).state == "LISTEN"
    finally:
        for s in (c, conn, srv):
            s.close()
    assert tcp_state(c) is None  # closed: nothing to say


# --- ICMP -------------------------------------------------------------------------------

def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 61) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, ttl, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def test_checksum_and_echo():
    # RFC 1071's worked example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    pkt = build_echo(0x1234, 7, echo_payload("rig-x-icmp-1-00ff00ff", 56))
    assert len(pkt) == 64 and checksum(pkt) == 0
    assert pkt[8:].startswith(b"rig-x-icmp-1-00ff00ff|")
    with pytest.raises(ValueError):
        echo_payload("n" * 60, 56)


def test_parse_echo_reply():
    payload = echo_payload("nonce", 56)
    reply = bytes([ECHO_REPLY]) + build_echo(0xBEEF, 3, payload)[1:]
    got = parse_icmp(ipv4("198.51.100.10", "192.168.1.10", 1, reply))
    assert (got.src, got.ttl, got.type, got.ident, got.seq, got.payload) == (
        "198.51.100.10", 61, ECHO_REPLY, 0xBEEF, 3, payload)


def test_parse_frag_needed_quoting_our_echo():
    inner = ipv4("192.168.1.10", "198.51.100.10", 1, build_echo(0xBEEF, 4, b"x" * 1426))[:28]
    icmp = struct.pack("!BBHHH", DEST_UNREACH, 4, 0, 0, 1400) + inner
    got = parse_icmp(ipv4("10.0.0.1", "192.168.1.10", 1, icmp, ttl=63))
    assert (got.src, got.type, got.code, got.ident, got.seq, got.mtu) == ("10.0.0.1", 3, 4, 0xBEEF, 4, 1400)


def test_parse_icmp_ignores_what_is_not_about_an_echo():
    assert parse_icmp(b"") is None
    assert parse_icmp(ipv4("1.2.3.4", "5.6.7.8", 6, b"\0" * 20)) is None  # TCP
    assert parse_icmp(ipv4("1.2.3.4", "5.6.7.8", 1, build_echo(1, 1, b""))) is None  # a request
    udp_inner = ipv4("192.168.1.10", "198.51.100.10", 17, b"\0" * 8)
    port_unreach = struct.pack("!BBHI", 3, 3, 0, 0) + udp_inner
    assert parse_icmp(ipv4("198.51.100.10", "192.168.1.10", 1, port_unreach)) is None
    assert parse_icmp(ipv4("1.2.3.4", "5.6.7.8", 1, b"\0\0\0")) is None  # truncated


# --- records ------------------------------------------------------------------------------

def sample() -> ProbeResult:
    return ProbeResult(kind="tcp", id="tcp-1", target="198.51.100.10:80", nonce=make_nonce("r1", "tcp-1"),
                       started=1.5, ended=4.5, ok=False, error=TIMED_OUT, local="192.168.1.10:40312",
                       tcp=TcpState("SYN_SENT", 2, 2, 0, 536, 0, 1500, ("sack",)),
                       seen={"connected": False, "elapsed": 3.0})


def test_record_roundtrip_and_jsonl(tmp_path):
    r = sample()
    d = r.to_dict()
    assert d["format"] == "rig.probe/1" and d["tcp"]["state"] == "SYN_SENT"
    assert ProbeResult.from_dict(json.loads(json.dumps(d))) == r
    path = str(tmp_path / "probes.jsonl")
    write_jsonl([r, r], path)
    assert read_jsonl(path) == [r, r]


def test_record_refuses_other_formats_and_junk(tmp_path):
    d = sample().to_dict()
    with pytest.raises(InputError, match="rig.probe/2"):
        ProbeResult.from_dict({**d, "format": "rig.probe/2"})
    del d["nonce"]
    with pytest.raises(InputError, match="incomplete"):
        ProbeResult.from_dict(d)
    bad = tmp_path / "probes.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match="not JSON"):
        read_jsonl(str(bad))
    with pytest.raises(InputError, match="cannot read"):
        read_jsonl(str(tmp_path / "missing.jsonl"))


def test_nonce_shape():
    a, b = make_nonce("2026-11-26T09:00 seed!", "large-1"), make_nonce("2026-11-26T09:00 seed!", "large-1")
    assert a != b and a.startswith("rig-20261126T090-large-1-") and len(a) <= 40
    assert all(c.isalnum() or c in "-_." for c in a)
    assert make_nonce("", "udp-1").startswith("rig-udp-1-")


def test_error_phrases():
    import errno

    assert error_phrase(errno.ECONNREFUSED) == REFUSED
    assert error_phrase(OSError(errno.EMSGSIZE, "Message too long")) == MSG_TOO_LONG
    assert error_phrase(socket.timeout()) == TIMED_OUT
    assert error_phrase(OSError(errno.EACCES, "Permission denied")) == "permission denied"


# --- arguments --------------------------------------------------------------------------

def test_parse_kinds():
    assert parse_kinds(None) == DEFAULT_KINDS == parse_kinds("")
    # the fragmented datagram only on request: a MAP-E line loses it by design
    assert "large-udp" in PROBE_KINDS and "large-udp" not in DEFAULT_KINDS
    assert parse_kinds("large-udp,udp") == ("udp", "large-udp")
    assert parse_kinds("udp, icmp") == ("icmp", "udp")
    with pytest.raises(UsageError, match="unknown probe kind dns"):
        parse_kinds("icmp,dns")


@pytest.mark.parametrize("kwargs, match", [
    ({"server_addr": "example.com"}, "not an IPv4"),
    ({"timeout": 0}, "time-out"),
    ({"burst": 0}, "burst"),
    ({"kinds": ["tcp", "ftp"]}, "unknown probe kind"),
    ({"kinds": "tcp"}, "not a string"),
    ({"icmp_sizes": (20,)}, "ICMP sizes"),
    ({"tcp_port": 0}, "bad port"),
])
def test_bad_arguments_are_usage_errors(kwargs, match):
    args = {"netns": None, "server_addr": "127.0.0.1", **kwargs}
    with pytest.raises(UsageError, match=match):
        run_probes(**args)


def test_missing_namespace_is_infra_error():
    with pytest.raises(InfraError, match="does not exist"):
        run_probes("rigp-surely-missing", "127.0.0.1")


def test_parse_extended_err_from_ip_recverr():
    from rig.probes.icmp import parse_extended_err

    ee = struct.pack("=IBBBBII", 90, 2, 3, 4, 0, 1400, 0)  # EMSGSIZE, origin ICMP, frag-needed, mtu
    offender = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton("10.0.0.1"))
    assert parse_extended_err(ee + offender) == (90, 3, 4, 1400, "10.0.0.1")
    local = struct.pack("=IBBBBII", 90, 1, 0, 0, 0, 1400, 0)  # origin LOCAL: our own sendto
    assert parse_extended_err(local) is None
    assert parse_extended_err(b"\0" * 4) is None


def test_reading_stops_at_a_malformed_chunk():
    from rig.probes.http import _done

    head, off = httpwire.split_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert _done(head, bytearray(b"x" * off + b"5\r\nhello\r\n"), off) is False
    assert _done(head, bytearray(b"x" * off + b"zz\r\n"), off) is True
    with pytest.raises(httpwire.MalformedResponse):
        httpwire.parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
