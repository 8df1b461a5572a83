"""Logs, metrics and the request log: what an operator reads to find out what happened."""
