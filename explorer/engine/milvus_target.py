"""Where a Milvus export lives: `milvus://` addresses, collection names, and opening a client for them.

Milvus Lite is the default (a `.db` folder, in the cache unless a path is given): milvus-lite 3 runs it as a gRPC
server on a thread of this process, started by pymilvus for a `.db` URI and holding a lock on the folder; `close`
stops it once the last client of this process is closed, so that another process (the next `explorer` command)
can open the folder. A server or cluster is an `http://`, `https://`, `tcp://` or `unix:` URI, its token taken
from MILVUS_TOKEN.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer import paths
from explorer.engine.catalog import stored_name
from explorer.engine.export_data import ExportError, require

SCHEME = "milvus://"
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
_open_lite: dict[str, int] = {}  # clients open per Lite store in this process
_lock = threading.Lock()


def default_lite_path() -> Path:
    """Where `--to milvus` writes without a URI: a Milvus Lite folder in the cache, beside the catalogs."""
    return paths.cache_root() / "milvus.db"


@dataclass(frozen=True)
class Target:
    """Where a Milvus store is: a Milvus Lite `.db` path, or a server's URI; and a collection (alias) name."""

    uri: str
    collection: str | None = None

    @property
    def lite(self) -> bool:
        return not self.uri.startswith(SERVER_SCHEMES)

    @classmethod
    def parse(cls, text: str | None) -> Target:
        """`milvus://PATH_OR_URI[#collection]`, or the same without the scheme; an empty path is the default file."""
        text = (text or "").removeprefix(SCHEME)
        where, _, name = text.partition("#")
        if not where:
            where = str(default_lite_path())
        if not where.startswith(SERVER_SCHEMES):
            where = str(Path(where).expanduser().resolve())
            if not where.endswith(".db"):
                raise ExportError(f"a Milvus Lite store is a path ending in .db, not {where}: add .db to the name")
        if name and not valid_name(name):
            raise ExportError(f"{name!r} is not a Milvus collection name: use letters, digits and underscores")
        return cls(where, name or None)


def valid_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name) is not None


def collection_name(folders: list[Path], fingerprint: str) -> str:
    """One collection per (set of folders, model): readable from the first folder's name, unique by a hash."""
    key = "\n".join(sorted(stored_name(str(Path(f).resolve())) for f in folders)) + "\n" + fingerprint
    slug = re.sub(r"[^A-Za-z0-9]+", "_", Path(folders[0]).resolve().name).strip("_")[:32] if folders else ""
    return f"explorer_{slug or 'export'}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def connect(target: Target, create: bool = False) -> Any:
    """A pymilvus client for the target; a Lite store must exist unless `create` (a query never makes one)."""
    pymilvus = require("pymilvus", "Milvus")
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its own tracebacks on stderr; we say what failed
    token = ""
    if target.lite:
        require("milvus_lite", "Milvus Lite")
        # the in-process server logs a traceback for each call it does not implement (AllocTimestamp, which
        # pymilvus tries first and then does without): noise in a terminal, not a failure
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # a store locked by another process: said below
        path = Path(target.uri)
        if not create and not path.exists():
            raise ExportError(f"there is no Milvus Lite store at {target.uri}: export to it first")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        token = os.environ.get("MILVUS_TOKEN", "")
    try:
        client = pymilvus.MilvusClient(uri=target.uri, token=token)
    except Exception as exc:
        if target.lite:
            raise ExportError(
                f"cannot open the Milvus Lite store {target.uri} ({reason(exc)}): is another program using it?"
            ) from exc
        raise ExportError(f"cannot connect to Milvus at {target.uri} ({reason(exc)}): is it running?") from exc
    if target.lite:
        with _lock:
            _open_lite[target.uri] = _open_lite.get(target.uri, 0) + 1
    return client


def close(client: Any, target: Target) -> None:
    """Close the client, and stop Milvus Lite's in-process server after its last client (see the docstring)."""
    client.close()
    if target.lite:
        with _lock:
            _open_lite[target.uri] = left = _open_lite.get(target.uri, 1) - 1
        if left <= 0:
            from milvus_lite.server_manager import server_manager_instance

            _open_lite.pop(target.uri, None)
            server_manager_instance.release_server(target.uri)


def reason(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)
