"""The composition root: the `escalator` command line and the `faust -A` entry points wire the
runtime, the connectors and the tools together; none of them imports this package."""
