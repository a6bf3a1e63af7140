"""The local simulator's offer."""

from __future__ import annotations

# name -> (vCPUs, GiB of memory)
MACHINE_TYPES: dict[str, tuple[int, int]] = {"small": (2, 4), "medium": (4, 16), "large": (8, 32), "xlarge": (16, 64)}
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.29", "1.30", "1.31", "1.32", "1.33")
DEFAULT_KUBERNETES_VERSION = "1.31"
