"""Who may do what: API keys, the viewer they make, and per-key rate limits."""
