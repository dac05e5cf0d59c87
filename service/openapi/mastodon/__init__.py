"""openapi.mastodon: the contract of the Mastodon-compatible subset, mirroring
service/api/mastodon/ (instance.py, accounts.py, statuses.py); common.py holds its entities
(Mastodon's Status, Account, Context, Error) and error answers. May import: what
service.openapi may import, and service.openapi.common.
"""
