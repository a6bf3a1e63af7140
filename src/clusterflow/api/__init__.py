"""The REST API: validates, authorizes, records and enqueues; never calls a cloud."""
