"""Ask the aggregator example about a product: play the catalog and the stock services (two small
HTTP servers on this machine), start the process over HTTP and print the merged answer.

    .venv/bin/python examples/try_aggregator.py --sku book-123
    .venv/bin/python examples/try_aggregator.py --sku unknown     # not stocked: available 0

Needs `bridge dev` running (web on http://127.0.0.1:8080) with the shipped examples loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiohttp import web


async def product(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    print(f"catalog service: {request.method} {request.path}")
    return web.json_response({"sku": sku, "name": f"The book {sku}", "price": 24.9})


async def stock(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    print(f"stock service:   {request.method} {request.path}")
    if sku == "unknown":
        return web.json_response({"message": f"{sku} is not stocked"}, status=404)
    return web.json_response({"sku": sku, "available": 3, "warehouse": "north"})


async def serve(handler: object, route: str, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_get(route, handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sku", default="book-123")
    parser.add_argument("--web", default="http://127.0.0.1:8080")
    parser.add_argument("--catalog-port", type=int, default=8091)
    parser.add_argument("--stock-port", type=int, default=8092)
    args = parser.parse_args()
    runners = [
        await serve(product, "/products/{sku}", args.catalog_port),
        await serve(stock, "/items/{sku}", args.stock_port),
    ]
    start = {
        "definition": "aggregator",
        "input": {
            "sku": args.sku,
            "catalogUrl": f"http://127.0.0.1:{args.catalog_port}",
            "stockUrl": f"http://127.0.0.1:{args.stock_port}",
        },
    }
    try:
        # ?wait=10: the answer comes in this request when the process ends within 10 s.
        url = f"{args.web}/processes?wait=10"
        async with aiohttp.ClientSession() as http, http.post(url, json=start) as response:
            process = await response.json()
        print(f"POST /processes?wait=10 -> {response.status}, process {process.get('status')}")
        print(json.dumps(process.get("output", process), indent=2))
        if "id" in process:
            print(f"history: {args.web}/processes/{process['id']}/history")
    finally:
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
