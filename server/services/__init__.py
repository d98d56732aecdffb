"""The service layer: the only code that changes rows. It owns each transaction, then publishes."""
