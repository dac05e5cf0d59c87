"""api.admin: /v1/admin/..., behind the admin token (service.http.auth.require_admin), one
module per URL prefix. May import: what service.api may import.
"""
