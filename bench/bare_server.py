"""The baseline for bench/cached_throughput.py: a bare aiohttp app that returns fixed bytes.

    python bench/bare_server.py PORT BODY_FILE
"""
import sys

from aiohttp import web


def main() -> None:
    port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", handler)
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
