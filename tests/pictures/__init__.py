"""Pictures of the bot for the README: ``python -m tests.pictures`` (see ``__main__.py``)."""
