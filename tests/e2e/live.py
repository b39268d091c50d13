"""A real VO service over HTTP on 127.0.0.1, for tests that drive it with real clients.

werkzeug's threaded server binds first (port 0: the kernel picks a free port, no race),
then the app is built with ``PUBLIC_URL`` naming that port, migrated and seeded. On exit
the server stops, the database engine is disposed and the work folder removed, and the
port is checked closed: nothing outlives the test.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
from flask import Flask
from support import make_app
from werkzeug.serving import make_server

from vo_service.db import db


@dataclass
class Live:
    base: str
    app: Flask
    work: Path


def _not_ready(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready\n"]


@contextmanager
def live_service(seed: Callable[[Flask], Any] | None = None, prefix: str = "xos-live-",
                 **config: Any) -> Iterator[Live]:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    app = server = thread = None
    try:
        server = make_server("127.0.0.1", 0, _not_ready, threaded=True)
        base = f"http://127.0.0.1:{server.server_port}"
        app = make_app("sqlite:///" + str(work / "xos.sqlite3"), PUBLIC_URL=base, **config)
        with app.app_context():
            flask_migrate.upgrade()
        if seed is not None:
            seed(app)
        server.app = app
        thread = threading.Thread(target=server.serve_forever, name=f"{prefix}http",
                                  daemon=True)
        thread.start()
        yield Live(base, app, work)
    finally:
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(10)
        if app is not None:
            watch = app.extensions.get("xos_revision_watch")
            if watch is not None:  # the long-polls' watcher thread ends with the service
                watch.close()
            with app.app_context():
                db.engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
    assert thread is not None and not thread.is_alive()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=2):
            raise AssertionError("the test server still listens")
    except ConnectionRefusedError:
        pass
    assert not work.exists()
