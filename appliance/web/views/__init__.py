"""The panel's blueprints, one module each."""
