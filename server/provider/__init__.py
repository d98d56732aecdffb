"""Media generation providers: the port the services use (`port`, with its neutral `types` and `errors`,
the shared `retry` rules, `model_schema` and `progress` readers), the `registry` of the configured ones,
and one package per adapter behind it (`replicate`, `fal`), each with its settings. fal's simulator lives
in its package; Replicate's is `server.simulator`, on the core both simulators share."""
