"""The small error tree of rig, and the exit codes of the CLI contract (DESIGN.md §2).

A lost packet is data, never an exception. Exceptions are for things that stop a run:
bad input (exit 2) or broken infrastructure (exit 3). Lower layers' errors are
translated at the boundaries with ``raise XError(...) from exc``; each message is one
line a user can act on.
"""

EXIT_CLEAN = 0  # the path is clean
EXIT_PROBLEM = 1  # the run found a path problem
EXIT_USAGE = 2  # usage or input error (bad spec, unreadable capture)
EXIT_INFRA = 3  # infrastructure error (provisioning, SSH, capture failed)


class RigError(Exception):
    """Base of every error rig raises on purpose. ``str(err)`` is the one-line message."""

    exit_code = EXIT_INFRA


class UsageError(RigError):
    """Bad flags, bad rig.toml, unknown scenario: the user can fix the command."""

    exit_code = EXIT_USAGE


class InputError(RigError):
    """An input file cannot be used: not a capture, truncated header, unknown format."""

    exit_code = EXIT_USAGE


class InfraError(RigError):
    """Something rig needs did not work: provisioning, SSH, a tool, a capture."""

    exit_code = EXIT_INFRA


class MissingToolError(InfraError):
    """A program rig needs (tcpdump, sshd, apache2, nft, ...) is not installed."""


class NotRootError(InfraError):
    """The lab needs root (network namespaces, tcpdump, sshd, Apache)."""
