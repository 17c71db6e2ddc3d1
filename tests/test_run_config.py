"""rig.toml + flags -> RunSpec: flags win, a bad file is one clear line (exit 2)."""

import subprocess

import pytest

from _runhelp import rig_cmd
from rig.backends.base import RunSpec
from rig.cli import build_parser
from rig.config import check_spec, load_spec, spec_from
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


@pytest.mark.parametrize("spec,message", [
    (RunSpec(scenario="nope"), "unknown scenario 'nope'; choose one of: healthy"),
    (RunSpec(probes=("tcp", "dns")), "unknown probe kind dns"),
    (RunSpec(backend="ssh", options={"host": "me@h"}, capture_at=("client", "server", "router")),
     "the ssh backend has no router"),
    (RunSpec(options={"location": "japaneast"}), "--location is an option of the azure backend, not of lab"),
    (RunSpec(backend="azure", options={"host_key": "x"}), "--host-key is an option of the ssh backend"),
    (RunSpec(backend="ssh"), "--backend ssh needs --host"),
    (RunSpec(backend="ssh", options={"host": "me@h", "identity": "/nonexistent/id"}), "--identity .*no such file"),
    (RunSpec(backend="gcp"), "unknown backend 'gcp'"),
])
def test_check_spec_finds_every_problem_before_the_run(spec, message):
    with pytest.raises(UsageError, match=message) as err:
        check_spec(spec)
    assert "\n" not in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_check_spec_passes_what_the_backends_read():
    check_spec(RunSpec(scenario="seed", probes=("tcp",), capture_at=("client", "server", "router")))
    check_spec(RunSpec(backend="ssh", scenario="any-label", options={"host": "me@h", "host_key": "k"}))
    check_spec(RunSpec(backend="azure", options={"location": "japaneast", "size": "B1s"}))
    check_spec(RunSpec(scenario="nope", options={"rig_id": "kept"}))  # --rig: the kept rig says what it is


def test_an_unknown_scenario_is_one_line_and_leaves_no_bundle(tmp_path):
    """Found before anything is made: exit 2, printed once, no bundle (not even ./runs/)."""
    res = subprocess.run(rig_cmd("run", "--scenario", "nope"), cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("rig: unknown scenario 'nope'") and res.stderr.count("\n") == 1, res.stderr
    assert list(tmp_path.iterdir()) == []
    res = subprocess.run(rig_cmd("run", "--scenario", "nope", "--out", str(tmp_path / "b")), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "b").exists()


def test_run_options_are_parsed_once_and_typed():
    from rig.config import RunOptions, run_options

    assert run_options({}) == RunOptions()
    o = run_options({"dry_run": "yes", "redact": "true", "archive": "0", "install_packages": "false",
                     "provision_timeout": "900", "ttl_hours": "2.5", "location": "japaneast"})
    assert o == RunOptions(dry_run=True, redact=True, archive=False, install_packages=False,
                           provision_timeout=900.0, ttl_hours=2.5)


@pytest.mark.parametrize("backend,option,value", [
    ("azure", "dry_run", "maybe"), ("lab", "redact", "sure"), ("ssh", "install_packages", "nope"),
    ("azure", "provision_timeout", "soon"), ("azure", "ttl_hours", "-1"),
])
def test_a_bad_run_option_is_one_line_before_the_run(backend, option, value):
    spec = spec_from({backend: {option: value}, **({"ssh": {"host": "me@h", option: value}} if backend == "ssh" else {})},
                     args("--backend", backend))
    with pytest.raises(UsageError, match=f"option {option}: expected") as err:
        check_spec(spec)
    assert "\n" not in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_a_bad_run_option_in_rig_toml_exits_2_with_one_line_and_no_bundle(tmp_path):
    (tmp_path / "rig.toml").write_text('backend = "azure"\n[azure]\ndry_run = "maybe"\n')
    res = subprocess.run(rig_cmd("run"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_USAGE
    assert res.stderr.strip().count("\n") == 0 and "dry_run" in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rig.toml"]
