"""The ``tapir`` command line: one module per command group, all going through the facade."""
