"""Live delivery of committed changes: the event log read in order, a doorbell between processes."""

from server.events.hub import EventHub
from server.events.subscription import SubscriberOverflow, Subscription
from server.events.tailer import EventLog

__all__ = ["EventHub", "EventLog", "SubscriberOverflow", "Subscription"]
