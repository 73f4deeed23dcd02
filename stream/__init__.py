"""The streaming engine: frames flow through bounded queues between threaded stages."""
