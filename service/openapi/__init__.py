"""openapi: the OpenAPI 3.1 document, the contract: served at /openapi.json, checked against
the server by schemathesis, and equal to the routes (tests/test_docs.py). Its modules mirror
service/api/ (the URL tells the file); common.py holds the shared parts and the response
headers, rate_limits.py the 429/403 answers every limited operation has.

Pure data built from the settings. May import: service.inputs (the patterns and bounds the
handlers check), service.resilience (rate-limit budgets), service.core, storage; never
service.api (it mirrors it), service.http or aiohttp.
"""
