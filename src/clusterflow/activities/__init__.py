"""Activities: every side effect of a workflow, grouped by what it touches.

Activity classes receive their clients (database pool, cloud SDK sessions) from the worker, so
tests and production differ only in the endpoints those clients are built with.
"""
