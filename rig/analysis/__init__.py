"""The analysis: packet tables of capture points in, a ``rig.verdict/1`` Verdict out.

keys: 64-bit hashes of NAT-invariant fields; sides: per-capture grouping (TCP
connections, echo, UDP); match: joins across points and the clock offset; exchanges:
the client's exchanges and what each point saw of them; outcomes: one word per
exchange; changes: what the path rewrote; diagnosis: the sentence for the whole run;
api: ``analyse`` and the ``rig diff`` handler.
"""
