"""The agent that runs inside a registered cluster and dials home (`clusterflow-agent`)."""
