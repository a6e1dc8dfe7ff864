"""Serving the console: `liuhen web` in the foreground, or, under `liuhen serve`, in a child
process of its own — a page being rendered never competes with SMTP intake for the
interpreter, and a console that cannot start (its port taken) leaves mail untouched."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process

from config.settings import Settings

log = logging.getLogger(__name__)


def run_web(settings: Settings) -> None:
    """Serve the console until stopped (uvicorn; SIGINT/SIGTERM end it)."""
    import uvicorn

    from gateway.bootstrap import build_context
    from gateway.logs import configure as configure_logging
    from gateway.web.app import create_app

    configure_logging(settings)
    ctx = build_context(settings)
    web = settings.web
    uvicorn.run(create_app(ctx), host=web.host, port=web.port, log_level="warning", access_log=False,
                proxy_headers=False, server_header=False)


class WebProcess:
    """The console beside `serve`, in a fresh interpreter."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        self._process = multiprocessing.get_context("spawn").Process(
            target=run_web, args=(self._settings,), name="liuhen-web", daemon=True)
        self._process.start()
        log.info("web console on %s", self._settings.web.url)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()  # uvicorn ends on SIGTERM, finishing open requests
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
