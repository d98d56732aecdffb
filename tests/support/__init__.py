"""Helpers the tests share: live servers on free ports, database and service fixtures."""
