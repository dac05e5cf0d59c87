"""Arbor's aiohttp service: settings, handlers, the conversation pipeline, presenters."""
