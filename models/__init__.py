"""Models: arrays and tensors in, arrays and tensors out. They know nothing of queues."""
