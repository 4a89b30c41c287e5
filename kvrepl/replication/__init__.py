"""Replication: the backlog and stream feed (sans-IO), master and replica links (trio)."""
