"""openapi.admin: the contract of /v1/admin/..., one module per URL prefix as in
service/api/admin/. May import: what service.openapi may import, and service.openapi.common.
"""
