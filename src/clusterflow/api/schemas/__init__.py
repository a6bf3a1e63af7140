"""Request and response documents, named and shaped as in the reference API (camelCase)."""
