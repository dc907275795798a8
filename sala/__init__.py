"""The `sala` command: the one place that composes the server's and the worker's commands."""
