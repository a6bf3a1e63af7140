"""clusterflow: a workflow-orchestrated control plane for Kubernetes cluster lifecycle."""

__version__ = "0.1.0"
