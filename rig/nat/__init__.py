"""The NAT profile: how the NATs between the client and the responder behave, per protocol.

Modules: records (the typed profile and its JSON, the verdict's ``nat`` section),
classify (pure functions from what the responder saw to RFC 4787 / 5382 words),
client (the tests, run from the client side against the responder), responder
(starting templates/nat_responder.py on the server over SSH), layers (which NAT did
what, from the router capture), run (the pipeline's hook: responder up, tests, down).
"""
