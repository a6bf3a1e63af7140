"""The worker process: runs workflows and activities, and reconciles unstarted operations."""
