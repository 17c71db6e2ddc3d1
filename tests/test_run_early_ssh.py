"""rig.run.EarlyConnection: rig's SSH connection opened on a thread while the playbook
runs, against a real sshd in a namespace (tests/_sshd.py)."""

import pytest

from _sshd import needs_sshd, sshd  # noqa: F401 (sshd is a fixture)
from rig.backends.base import SSHEndpoint
from rig.errors import InfraError
from rig.run import EarlyConnection


@pytest.mark.root
@needs_sshd
def test_take_gives_the_connection_it_opened(sshd):  # noqa: F811 (fixture)
    early = EarlyConnection(sshd.endpoint)
    with early.take() as ssh:  # already connected: entering it connects nothing again
        client = ssh._client
        assert ssh.run(["echo", "up"]).stdout == "up\n"
        assert ssh._client is client
    assert ssh._client is None  # closed on the way out, as `with SSHClient(...)` does


@pytest.mark.root
@needs_sshd
def test_take_raises_what_the_connect_raised(sshd, tmp_path):  # noqa: F811 (fixture)
    ep = SSHEndpoint(**{**sshd.endpoint.__dict__, "key_file": str(tmp_path / "nope")})
    early = EarlyConnection(ep)
    with pytest.raises(InfraError, match="does not exist"):
        early.take()
    early.abandon()  # nothing to close: no error


@pytest.mark.root
@needs_sshd
def test_an_abandoned_connection_is_closed(sshd):  # noqa: F811 (fixture)
    early = EarlyConnection(sshd.endpoint)
    early._connecting.wait()  # connected by now
    client = early._client
    assert client is not None and client.transport.is_active()
    early.abandon()  # a configure that failed: the connection must not outlive the run
    assert client._client is None


@pytest.mark.root
@needs_sshd
def test_a_connection_abandoned_while_connecting_closes_itself(sshd):  # noqa: F811 (fixture)
    early = EarlyConnection(sshd.endpoint)
    early.abandon()  # at once: the connect is (most likely) still under way
    assert early.take() is None or early.take()._client is None  # closed either way
    assert early._client is None
