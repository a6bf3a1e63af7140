"""PostgreSQL records: ordered migrations, repositories with explicit SQL, LISTEN/NOTIFY.

The operation record here is the queryable truth clients read; Temporal is never asked on a
read path.
"""
