"""Stream processors: faust agents that feed domain events and task replies into the engine."""
