"""The `clusterflow` command: run the stack's processes, and talk to a running API."""
