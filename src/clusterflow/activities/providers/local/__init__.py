"""The `local` provider: a simulated cloud for demos and tests, with realistic phases.

Resources live in PostgreSQL (`records.local_cloud`) and behave like a cloud's: creation
returns at once, the resource is CREATING until it is ready, and creating an existing resource
is a no-op, so a retried or re-run phase waits for what exists instead of creating it again.

Split as the cloud providers are: what the spec asks for (`spec`), the injected failures
(`failures`), the waits that notice a cancel within a second (`waits`), and the provider
that runs the phases (`provider`). The catalog's versions and
machine types are re-exported because callers compare against the provider's own offer.
"""

from clusterflow.activities.providers.local.provider import LocalProvider
from clusterflow.catalog.local import DEFAULT_KUBERNETES_VERSION, KUBERNETES_VERSIONS, MACHINE_TYPES

__all__ = ["DEFAULT_KUBERNETES_VERSION", "KUBERNETES_VERSIONS", "MACHINE_TYPES", "LocalProvider"]
