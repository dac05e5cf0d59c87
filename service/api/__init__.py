"""api: the endpoints. One module per URL prefix (the URL tells the file); each exports its
ROUTES, and ROUTES below is every route the app serves (the one list; tests/test_docs.py
checks it equals the OpenAPI document's operations).

Handlers are thin: parse the input (service.inputs), call the pipeline or storage, present
(service.http.responses). Endpoint modules are independent of each other. May import:
service.openapi (the /openapi.json handler), service.http and every layer below it, storage.
"""
