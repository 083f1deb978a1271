"""bridge: Kafka domain events into Amazon States Language process instances."""

__version__ = "0.1.0"
