"""The baseline for bench/cached_throughput.py: a bare aiohttp app that returns fixed bytes.

    python bench/bare_server.py PORT BODY_FILE [CONTENT_ENCODING]

With CONTENT_ENCODING (br, gzip), BODY_FILE holds the encoded bytes, sent with that header: the
same bytes Arbor sends for that Accept-Encoding.
"""
import sys

from aiohttp import web


def main() -> None:
    port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
    headers = {"Content-Encoding": sys.argv[3]} if len(sys.argv) > 3 else None

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/healthz", handler)
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
