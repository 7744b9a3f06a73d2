"""A page process per browser session, through wslink's launcher (the one trame deploys with).

The launcher serves trame's static client; each new tab asks it (POST /paraview/) for a session,
and it starts `microcalcai web` on a free port of its range, waits for the page's ready line and
hands the tab that page's websocket address and a secret only that tab knows. The page process
stops itself a little after its tab closes (wslink's timeout) or after idle minutes
(`MicrocalcWebApp`); the launcher reuses its port. The size of the port range is the session
limit: a tab beyond it gets a page that says so instead of an endless spinner.

Only the page for "/" and the limit's words are ours; sessions, ports, processes and readiness
are wslink's `LauncherResource`.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("microcalcai.web.sessions")

ENDPOINT = "/paraview/"  # where trame's client asks for a session when it has no websocket address
APPLICATION = "trame"  # the name trame's client sends (<html data-app-name>)
READY_LINE = "App running at"  # what trame prints once the page process listens

# trame's client shows no launcher error; this script turns a refusal into the launcher's words.
LIMIT_SCRIPT = """<script>
(function () {
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    if (method === "POST" && String(url).indexOf("paraview/") >= 0) {
      this.addEventListener("load", () => {
        if (this.status === 503) {
          const answer = typeof this.response === "string" ? JSON.parse(this.response) : this.response;
          document.body.innerHTML = '<div id="mc-session-refused" style="font: 18px sans-serif; '
            + 'padding: 40px; color: #eee; background: #222; height: 100vh"></div>';
          document.getElementById("mc-session-refused").textContent = (answer && answer.error)
            || "No session is free now; try again later.";
        }
      });
    }
    return open.apply(this, arguments);
  };
})();
</script>"""


def limit_message(sessions: int, idle_minutes: float) -> str:
    return (
        f"All {sessions} MicrocalcAI sessions are in use. Try again when someone closes their tab "
        f"(an unused session closes after {idle_minutes:g} minutes), or ask whoever runs the server "
        "to allow more sessions (microcalcai web --sessions N)."
    )


def static_client(folder: Path) -> Path:
    """trame's client and every trame module's files, as one folder the launcher serves."""
    from trame.tools.www import StaticContentGenerator

    generator = StaticContentGenerator()
    generator.enable_all()
    generator.write(str(folder))
    index = folder / "index.html"
    index.write_text(index.read_text().replace("</head>", LIMIT_SCRIPT + "\n</head>", 1))
    return folder


def launcher_config(
    server_url: str,
    host: str,
    port: int,
    sessions: int,
    idle_minutes: float,
    tab_close_s: int,
    content: Path,
    log_dir: Path,
) -> dict:
    page = [
        sys.executable, "-m", "microcalcai", "web", "--server", server_url, "--host", host,
        "--port", "${port}", "--authKey", "${secret}", "--timeout", str(tab_close_s),
        "--idle-minutes", f"{idle_minutes:g}",
    ]  # fmt: skip
    return {
        "configuration": {
            "host": host,
            "port": port,
            "endpoint": ENDPOINT.strip("/"),
            "content": str(content),
            "proxy_file": str(log_dir / "proxy-mapping.txt"),
            # use_hostname: the client puts the address it loaded the page from.
            "sessionURL": "ws://use_hostname:${port}/ws",
            "timeout": 180,  # seconds a page process may take to start on a loaded machine
            "log_dir": str(log_dir),
            "fields": [],
            "sanitize": {},  # the only value a tab sends is the application name
        },
        "resources": [{"host": host, "port_range": [port + 1, port + sessions]}],
        "properties": {},
        "apps": {APPLICATION: {"cmd": page, "ready_line": READY_LINE}},
    }


def run_launcher(
    server_url: str,
    host: str,
    port: int,
    sessions: int,
    idle_minutes: float,
    tab_close_s: int,
    log_dir: Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop every session's page by its process id."""
    import aiohttp.web as web
    from wslink.backends.aiohttp.launcher import LauncherResource

    scratch = Path(tempfile.mkdtemp(prefix="microcalcai-sessions-"))
    log_dir = Path(log_dir or scratch / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    content = static_client(scratch / "www")
    config = launcher_config(server_url, host, port, sessions, idle_minutes, tab_close_s, content, log_dir)
    launcher = LauncherResource(None, config)
    message = limit_message(sessions, idle_minutes)
    escaped = html.escape(message)

    def free_ended_sessions() -> int:
        """Release the ports of pages that stopped; the number of free session slots."""
        for ended in launcher.process_manager.listEndedProcess():
            launcher.session_manager.deleteSession(ended)
            launcher.process_manager.stopProcess(ended)
        return sum(len(r["available"]) for r in launcher.session_manager.resources.resources.values())

    async def index(request):
        if free_ended_sessions() == 0:
            body = f"<!doctype html><title>MicrocalcAI</title><p id='mc-session-refused'>{escaped}"
            return web.Response(text=body, content_type="text/html", status=503)
        return web.FileResponse(content / "index.html", headers={"Cache-Control": "no-store"})

    async def new_session(request):
        if free_ended_sessions() == 0:
            return web.json_response({"error": message}, status=503)
        try:
            answer = await launcher.handle_post(request)
        except KeyError:  # its page process ended while starting, and a newer request released it
            return web.json_response(
                {"error": f"The page process stopped while starting; its log is in {log_dir}."}, status=503
            )
        if answer.status == 200:
            log.info("session started (%d of %d in use)", sessions - free_ended_sessions(), sessions)
        return answer

    async def stop_sessions(_app):
        for session_id, process in list(launcher.process_manager.processes.items()):
            log.info("stopping session %s (process %d)", session_id, process.pid)
            process.terminate()
        for process in list(launcher.process_manager.processes.values()):
            try:
                process.wait(15)
            except Exception:  # noqa: BLE001 - a page that ignores SIGTERM is killed
                process.kill()
        shutil.rmtree(content, ignore_errors=True)

    app = web.Application()
    app.router.add_post(ENDPOINT, new_session)
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.add_routes([web.static("/", str(content))])
    app.on_cleanup.append(stop_sessions)
    (log_dir / "launcher-config.json").write_text(json.dumps(config, indent=2))
    log.info("session launcher on http://%s:%d/ (%d sessions, logs in %s)", host, port, sessions, log_dir)
    web.run_app(app, host=host, port=port, print=None)
