"""Transports that move fedcore's tasks and replies between processes; `grpc` is the real network one."""
