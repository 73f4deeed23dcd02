"""One module per pipeline stage. Stages know frames and queues, not HTTP."""
