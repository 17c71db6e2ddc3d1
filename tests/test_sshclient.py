"""SSHClient against a real sshd in a namespace: pinned host key, argv quoting, SFTP."""

import os

import pytest

from _sshd import keygen, needs_sshd, sshd  # noqa: F401 (sshd is a fixture)
from rig.backends.base import SSHEndpoint
from rig.errors import InfraError
from rig.sshclient import SSHClient, known_hosts_name, parse_host_key


def test_known_hosts_name():
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_bad_pinned_key_is_one_line_error():
    with pytest.raises(InfraError, match="pinned host key"):
        parse_host_key("ssh-ed25519")
    with pytest.raises(InfraError, match="cannot be read"):
        parse_host_key("ssh-ed25519 AAAAnotakey")


@pytest.mark.root
@needs_sshd
def test_run_quotes_argv_once(sshd):  # noqa: F811 (fixture)
    tricky = ["a b", "it's", "$HOME", "x;rm -rf /nonexistent", '"q"']
    with SSHClient(sshd.endpoint) as c:
        res = c.run(["printf", "%s\\n", *tricky])
        assert res.stdout.splitlines() == tricky
        res = c.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
        assert (res.rc, res.stdout, res.stderr) == (3, "out\n", "err\n")
        with pytest.raises(InfraError, match=r"rc 3.*err"):
            c.run(["sh", "-c", "echo err >&2; exit 3"])


@pytest.mark.root
@needs_sshd
def test_connection_is_made_inside_the_namespace(sshd):  # noqa: F811 (fixture)
    # sshd listens on 127.0.0.1 of its namespace only: the host's loopback has no sshd there
    with SSHClient(sshd.endpoint) as c:
        assert c.run(["ip", "-o", "link", "show"]).stdout.count(": lo:") == 1
        assert "eth" not in c.run(["ip", "-o", "link", "show"]).stdout


@pytest.mark.root
@needs_sshd
def test_wrong_host_key_is_rejected(sshd, tmp_path):  # noqa: F811 (fixture)
    other = keygen(tmp_path / "other_host")
    ep = SSHEndpoint(**{**sshd.endpoint.__dict__, "host_key": " ".join(other.split()[:2])})
    with pytest.raises(InfraError, match="host key"):
        SSHClient(ep).connect()


@pytest.mark.root
@needs_sshd
def test_missing_private_key_and_closed_port(sshd, tmp_path):  # noqa: F811 (fixture)
    ep = SSHEndpoint(**{**sshd.endpoint.__dict__, "key_file": str(tmp_path / "nope")})
    with pytest.raises(InfraError, match="does not exist"):
        SSHClient(ep).connect()
    ep = SSHEndpoint(**{**sshd.endpoint.__dict__, "port": 2})
    with pytest.raises(InfraError, match="refused"):
        SSHClient(ep, timeout=3).connect()


@pytest.mark.root
@needs_sshd
def test_fetch(sshd, tmp_path):  # noqa: F811 (fixture)
    src = tmp_path / "remote.bin"
    src.write_bytes(os.urandom(100_000))
    with SSHClient(sshd.endpoint) as c:
        c.fetch(str(src), str(tmp_path / "copy.bin"))
        assert c.read_file(str(src)) == src.read_bytes()
        with pytest.raises(InfraError, match="SFTP"):
            c.fetch(str(tmp_path / "missing"), str(tmp_path / "x"))
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()
