"""The hostile suite: each case sent as an attacker would send it, asserting what must still hold."""
