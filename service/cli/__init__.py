"""cli: the `arbor` command. arbor.py builds the parser and runs serve, seed, migrate and
settings; accounts.py, import_posts.py and repair.py add their subcommands; workers.py is
the supervisor of `serve --workers N`; common.py holds what the commands share (settings
from --setting, a database for one command), as Datasette's publish/common.py sits below
its publishers.

May import: service.app and every layer below it, storage.
"""
from .arbor import main

__all__ = ["main"]
