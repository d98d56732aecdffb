"""The media generation provider: the port the services use (`port`, with its neutral `types` and
`errors`), and the implementations behind it (Replicate's, which the simulator also plays, in `replicate`)."""
