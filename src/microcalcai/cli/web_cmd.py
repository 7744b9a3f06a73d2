"""`microcalcai web`: MicrocalcAI in the browser (a trame-slicer page over the Slicer module's Logic).

Serves a page with a slice view of a mammogram and the MicrocalcAI panel: open an image (upload
or the server's datastore), window/level presets, zoom, a point or ROI box, Classify (per model
and ensemble, with the saliency overlay), labels, Next sample and training. It talks to a
running `microcalcai serve` at --server. Binds 127.0.0.1 unless --host says otherwise.
One process holds one scene shared by every tab: give each person their own port (docs/web.md).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the MicrocalcAI web page (trame-slicer) for a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        required=True,
        metavar="URL",
        help="address of the MicrocalcAI server (`microcalcai serve`), e.g. http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind the page to (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the page (default 8080)")
    parser.add_argument(
        "--annotator",
        default="",
        metavar="NAME",
        help="name stored with every label saved from this page (one process per person: docs/web.md)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from microcalcai.errors import InputError

    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port from 1 to 65535")
    try:
        from microcalcai_logic.client import normalise_url
        from microcalcai_logic.errors import LogicError
    except ImportError:
        raise InputError(
            "the MicrocalcAI Logic package is not installed: pip install -e MicrocalcAI/Logic"
        ) from None
    try:
        url = normalise_url(args.server)
    except LogicError as error:
        raise InputError(f"--server: {error}") from None
    try:
        from microcalcai.web.app import MicrocalcWebApp
    except ImportError as error:
        raise InputError(
            f"the web page needs trame-slicer ({error}): pip install 'trame-slicer[standalone]==2.0.0'"
        ) from None
    import logging

    for name in ("trame_server", "trame_client", "trame_rca", "wslink", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)  # their INFO lines trace every state change
    print(f"MicrocalcAI web page on http://{args.host}:{args.port}/ (server {url})", flush=True)
    MicrocalcWebApp(url, annotator=args.annotator).start(host=args.host, port=args.port)
    return 0
