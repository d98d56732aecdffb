"""The HTTP routes beside GraphQL: the provider's webhooks, the media files, health and metrics."""
