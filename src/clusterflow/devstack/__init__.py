"""Embedded services for `make run` and the test suite: PostgreSQL and a Temporal dev server.

Both run as child processes of whoever starts them, with their data under one directory, so
stopping the parent stops them and a second start reuses the data.
"""
