import os
import socket
import subprocess
import uuid

import pytest

from rig.netns import connect_in, in_netns, socket_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture
def ns():
    name = f"rigt{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def ifnames() -> set[str]:
    return {n for _, n in socket.if_nameindex()}


def test_function_runs_inside_and_caller_stays_outside(ns):
    outside = ifnames()
    inside = in_netns(ns, ifnames)
    assert inside == {"lo"}
    assert ifnames() == outside


def test_socket_made_inside_stays_inside(ns):
    srv = socket_in(ns)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    # from inside the namespace the listener is reachable, from the host it is not
    c = connect_in(ns, ("127.0.0.1", port), timeout=2)
    conn, _ = srv.accept()
    c.sendall(b"x")
    assert conn.recv(1) == b"x"
    for s in (c, conn, srv):
        s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_exceptions_propagate(ns):
    with pytest.raises(ZeroDivisionError):
        in_netns(ns, lambda: 1 / 0)


def test_missing_namespace_is_a_clear_error():
    from rig.errors import InfraError

    with pytest.raises(InfraError, match="does not exist"):
        in_netns("rig-no-such-ns", lambda: None)
