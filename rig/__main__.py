from rig.cli import entry

raise SystemExit(entry())
