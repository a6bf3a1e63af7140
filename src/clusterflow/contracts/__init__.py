"""Contracts every layer shares: frozen dataclasses and enums, stdlib only.

They sit at the bottom of the package (see DESIGN.md, Layout): the API builds them, workflows
carry them through Temporal's data converter, activities and providers consume them. A value
crosses each seam as the same dataclass, so mypy and an editor follow a change from the route
to the cloud call. They only ever grow optional fields with defaults: renaming or removing a
field breaks workflows that are running.
"""
