"""The web panel: a Flask app factory, blueprints and server-rendered templates."""
