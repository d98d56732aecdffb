"""Darkroom: a GraphQL API for AI media generation, with live subscriptions instead of polling."""

__version__ = "0.1.0"
