"""Outgoing webhooks: the event log sent to the endpoints keys register, signed (Standard Webhooks)."""
