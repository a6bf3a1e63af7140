"""Provider implementations of the operation phases: one package per cloud (`local`, `aws`,
`gcp`, `azure`), each split by concept, behind the one `adapter.Provider` protocol.

Shared by all of them: `phases` (what every phase activity does around its work) and `adapter`
(a provider's three Temporal activities). Shared by the managed services that delete a cluster
whole (GKE, AKS): `managed_cluster`. Nothing here is named after two clouds: what two clouds
share is named by what it is.
"""
