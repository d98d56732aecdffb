"""Fan-out of committed changes to every subscriber, in this process and in others."""

from server.events.hub import EventHub, SubscriberOverflow, Subscription

__all__ = ["EventHub", "SubscriberOverflow", "Subscription"]
