"""What each provider offers (regions, machine types, Kubernetes versions), kept in one place
per provider so the API's validation and planning and the providers agree."""
