"""The generation pipeline: starting jobs, applying the provider's updates, and the event log they write."""
