"""The trio driver: TCP listener, client connections, blocking waits. Thin on purpose: all
decisions are made by the sans-IO engine in :mod:`kvrepl.commands`."""

from kvrepl.server.server import Server

__all__ = ["Server"]
