"""The config file: $PORTSIDE_CONFIG, else $XDG_CONFIG_HOME/portside/config.toml (~/.config/portside/config.toml).

```toml
theme = "nord"                   # any Textual theme name
registries = ["127.0.0.1:5000"]  # searched by the new-container screen (registry v2 catalog)
nginx_image = "nginx:latest"     # what the one-key nginx runs
log_tail = 1000                  # lines of history a log view starts with
hub_search = true                # search Docker Hub (through the engine) as you type in the new-container screen

[[hosts]]                        # hosts added in the host switcher (h); written by it, other lines kept
name = "build-box"
url = "tcp://10.0.0.5:2376"      # unix:///path, tcp://host:port, ssh://user@host
tls_ca = "/home/me/certs/ca.pem" # tls_cert, tls_key; tls_verify = false to skip verification

[keys]                           # binding id = "key[,key...]"; ids are listed by the help screen
run_nginx = "w"
remove = "delete,d"
```

A bad file never stops the app: each problem becomes a readable message and the default is used instead.
No Textual import here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every binding id a user may rebind, with its default keys; the screens use these ids.
DEFAULT_KEYS: dict[str, str] = {
    "quit": "q",
    "help": "question_mark,f1",
    "images": "I",
    "networks": "O",
    "volumes": "V",
    "events": "E",
    "hosts": "h,H",  # H also where a screen uses h (Images: history)
    "retry_host": "R",
    "host_add": "a",
    "host_remove": "delete,d",
    "host_retry": "r",
    "start": "s",
    "stop": "x",
    "restart": "r",
    "pause": "p",
    "kill": "K",
    "remove": "delete,d",
    "mark": "space",
    "mark_project": "g",
    "filter": "slash",
    "new": "c",
    "run_nginx": "w",
    "exec": "e",
    "copy_id": "Y",
    "copy_url": "U",
    "all_hosts": "A",
    "save_settings": "ctrl+s",
    "delete_row": "ctrl+d",
    "log_search": "slash",
    "log_follow": "f",
    "log_pause": "P",
    "log_timestamps": "t",
    "log_next": "n",
    "log_prev": "N",
    "log_save": "ctrl+s",
    "log_copy": "y",
    "resource_remove": "delete,d",
    "resource_inspect": "i,enter",
    "resource_mark": "space",
    "image_pull": "p",
    "image_history": "h",
    "image_prune": "P",
    "image_remove_force": "D",
    "image_run": "r",
    "image_build": "b",
    "network_create": "n",
    "volume_create": "n",
    "network_prune": "P",
    "volume_prune": "P",
    "pick_tag": "t",
    "kube_export": "k",
    "kube_play": "k",
    "kube_copy": "c",
    "kube_save": "s",
    "kube_type": "t",
    "kube_scope": "p",
}

_KEY = re.compile(r"^[A-Za-z0-9_+\-]+$")


@dataclass
class Config:
    path: Path | None = None
    theme: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    registries: list[str] = field(default_factory=list)
    nginx_image: str = "nginx:latest"
    log_tail: int = 1000
    hub_search: bool = True
    hosts: list[Any] = field(default_factory=list)  # the raw [[hosts]] tables; app.hosts.parse_user_hosts reads them


def config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("PORTSIDE_CONFIG"):
        return Path(env["PORTSIDE_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "portside" / "config.toml"


def load_config(path: Path | None = None) -> tuple[Config, list[str]]:
    """The config and a list of readable problems found in it (empty when all is well or there is no file)."""
    path = path or config_path()
    cfg = Config(path=path)
    if not path.exists():
        return cfg, []
    import tomllib  # no file, no TOML parser among the imports of the TUI's start

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        return cfg, [f"{path}: not valid TOML ({exc}); using the defaults"]
    except OSError as exc:
        return cfg, [f"{path}: cannot be read ({exc.strerror}); using the defaults"]
    return parse(data, cfg)


def parse(data: dict[str, Any], cfg: Config | None = None) -> tuple[Config, list[str]]:
    cfg = cfg or Config()
    where = str(cfg.path) if cfg.path else "config"
    errors: list[str] = []
    known = {"theme", "keys", "registries", "nginx_image", "log_tail", "hub_search", "hosts"}
    for key in data:
        if key not in known:
            errors.append(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
    if "theme" in data:
        if isinstance(data["theme"], str) and data["theme"]:
            cfg.theme = data["theme"]
        else:
            errors.append(f"{where}: theme must be a theme name in quotes, like theme = \"nord\"")
    if "registries" in data:
        regs = data["registries"]
        if isinstance(regs, list) and all(isinstance(r, str) and r for r in regs):
            cfg.registries = [r.rstrip("/") for r in regs]
        else:
            errors.append(f"{where}: registries must be a list of host[:port] strings")
    if "nginx_image" in data:
        if isinstance(data["nginx_image"], str) and data["nginx_image"]:
            cfg.nginx_image = data["nginx_image"]
        else:
            errors.append(f"{where}: nginx_image must be an image reference string")
    if "log_tail" in data:
        tail = data["log_tail"]
        if isinstance(tail, int) and not isinstance(tail, bool) and tail >= 0:
            cfg.log_tail = tail
        else:
            errors.append(f"{where}: log_tail must be a whole number of lines (0 or more)")
    if "hub_search" in data:
        if isinstance(data["hub_search"], bool):
            cfg.hub_search = data["hub_search"]
        else:
            errors.append(f"{where}: hub_search must be true or false")
    if "hosts" in data:
        cfg.hosts = data["hosts"] if isinstance(data["hosts"], list) else [data["hosts"]]
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        errors.append(f"{where}: [keys] must be a table of binding id = \"key\"")
        keys = {}
    for bid, value in keys.items():
        if bid not in DEFAULT_KEYS:
            errors.append(f"{where}: [keys] {bid!r} is not a binding id (known: {', '.join(sorted(DEFAULT_KEYS))})")
            continue
        parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
        if not parts or not all(p and _KEY.match(p) for p in parts):
            errors.append(
                f"{where}: [keys] {bid} = {value!r} is not a key list; write keys like \"s\", \"ctrl+s\" or "
                "\"delete,d\""
            )
            continue
        cfg.keys[bid] = ",".join(parts)
    return cfg, errors
