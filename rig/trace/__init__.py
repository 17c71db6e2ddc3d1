"""Where exactly packets die: TTL-limited copies of the probes, both ways (issue 11)."""
