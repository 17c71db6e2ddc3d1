"""rig.toml + flags -> RunSpec: flags win, a bad file is one clear line (exit 2)."""

import pytest

from rig.cli import build_parser
from rig.config import load_spec, spec_from
from rig.errors import EXIT_USAGE, UsageError


def args(*argv):
    return build_parser().parse_args(["run", *argv])


def test_defaults():
    spec = spec_from({}, args())
    assert (spec.backend, spec.scenario, spec.probes, spec.configure, spec.keep) == ("lab", "healthy", (), True, False)
    assert spec.capture_at == ("client", "server")
    assert spec.probe_timeout == 3.0 and spec.burst == 32


def test_file_then_flags_win():
    data = {"scenario": "seed", "timeout": 2, "probes": ["icmp", "tcp"], "burst": 8, "configure": False,
            "capture_at": ["router"], "ssh": {"host": "me@h"}}
    spec = spec_from(data, args())
    assert (spec.scenario, spec.probe_timeout, spec.probes, spec.burst, spec.configure) == ("seed", 2.0, ("icmp", "tcp"), 8, False)
    assert spec.capture_at == ("client", "server", "router")
    spec = spec_from(data, args("--scenario", "healthy", "--timeout", "1.5", "--probes", "udp", "--backend", "ssh",
                                "--keep", "--json"))
    assert (spec.scenario, spec.probe_timeout, spec.probes, spec.backend, spec.keep, spec.json) == \
        ("healthy", 1.5, ("udp",), "ssh", True, True)
    assert spec.options == {"host": "me@h"}
    assert spec_from({}, args("--no-configure")).configure is False


def test_backend_flags_become_options():
    spec = spec_from({"azure": {"location": "japaneast", "dry-run": True}}, args("--backend", "azure", "--size", "B1s"))
    assert spec.options == {"location": "japaneast", "dry_run": "true", "size": "B1s"}


@pytest.mark.parametrize("data,message", [
    ({"scenaro": "seed"}, "unknown key 'scenaro'"),
    ({"timeout": "fast"}, "timeout: expected float"),
    ({"burst": True}, "burst: expected int"),
    ({"backend": "gcp"}, "unknown backend 'gcp'"),
    ({"capture_at": ["hgw"]}, "unknown capture point 'hgw'"),
    ({"timeout": 0}, "between 0 and 120"),
    ({"probes": 3}, "probes: expected a list"),
    ({"run": {"scenario": "seed"}}, r"unknown table \[run\]"),
    ({"scenario": 7}, "scenario: expected str"),
])
def test_bad_values_are_one_line(data, message):
    with pytest.raises(UsageError, match=message) as err:
        spec_from(data, args())
    assert "\n" not in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_bad_toml_file(tmp_path):
    bad = tmp_path / "rig.toml"
    bad.write_text("scenario = \n")
    with pytest.raises(UsageError, match="not valid TOML") as err:
        load_spec(args("--config", str(bad)))
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="does not exist"):
        load_spec(args("--config", str(tmp_path / "none.toml")))
    good = tmp_path / "good.toml"
    good.write_text('scenario = "seed"\n[lab]\nprefix = "x"\n')
    assert load_spec(args("--config", str(good))).scenario == "seed"
