"""The `usagewatch` command line: thin commands over the domain packages."""
