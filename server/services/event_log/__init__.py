"""The event log: every committed change to a generation or its media, in commit order.

`events` appends inside the writer's transaction, `snapshots` is the small state each event carries,
`public_fields` declares the fields a snapshot (and the GraphQL types) hold, and `stored` reads the log
for the hub's tailer. Generations and media both write to it; it depends on neither service.
"""
