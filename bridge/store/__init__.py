"""Persistence: SQLAlchemy Core tables and helpers that take a connection.

Every helper takes an ``AsyncConnection``; the caller (the engine) owns the transaction, so that
state, history, outbox rows and the input's dedupe mark commit together by construction.
"""
