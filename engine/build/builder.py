"""Docker's classic builder: a Dockerfile's stages run step by step, each step committed as an image whose
parent is the step before, each looked up in the cache first (dockerd's builder/dockerfile, the reference for
every message and stream line here).

The builder uses the engine through three collaborators only: the image service (resolve, pull, container
layers, `buildstep` commits), the container manager (RUN steps are real containers: create, attach, start,
wait, remove) and the events bus. Output goes to `Output`, Docker's JSON stream (`{"stream": ...}`,
`{"aux": {"ID": ...}}`, pull progress), which the API handler writes as it comes.

Deliberate differences from dockerd: metadata-only steps (ENV, LABEL, CMD...) are committed without a throwaway
container (dockerd makes and removes one for each: no visible effect but time); stages the target does not need
are skipped, as BuildKit does; `COPY --chmod` is honoured (dockerd's classic builder refuses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import ids
from engine.build import copy as cp
from engine.build.context import BuildContext
from engine.build.dockerfile import BUILDKIT_ONLY, Dockerfile, Instruction, Stage, parse, parse_trigger
from engine.build.shell_lex import ShellLex
from engine.crashpoints import crashpoint
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.exec.protocol import STDERR
from engine.images import buildstep

log = logging.getLogger("portside.build")

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILTIN_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
                "no_proxy", "ALL_PROXY", "all_proxy"}


class BuildError(EngineError):
    """A failed step, in Docker's words; `code` is a RUN step's exit code (the JSON stream's errorDetail.code)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    quiet: bool = False
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    shmsize: int = 0
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpusetcpus: str = ""
    cpusetmems: str = ""
    cpuperiod: int = 0
    cpuquota: int = 0
    cgroupparent: str = ""
    ulimits: list[dict[str, Any]] = field(default_factory=list)
    securityopt: list[str] = field(default_factory=list)
    cachefrom: list[str] = field(default_factory=list)
    platform: str = ""
    registry_auths: dict[str, dict[str, Any]] = field(default_factory=dict)  # X-Registry-Config


class Output:
    """Docker's build stream: every message is one JSON object, handed to `emit` as it is made."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], quiet: bool = False) -> None:
        self._emit = emit
        self.quiet = quiet

    def stream(self, text: str) -> None:
        if not self.quiet and text:
            self._emit({"stream": text})

    def line(self, text: str) -> None:
        self.stream(text + "\n")

    def aux(self, obj: dict[str, Any]) -> None:
        self._emit({"aux": obj})

    def progress(self, msg: dict[str, Any]) -> None:
        if not self.quiet:
            self._emit(msg)



def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class BuildArgs:
    """Docker's BuildArgs: what --build-arg gave, which ARGs the current stage declared, the meta ARGs (before
    the first FROM), and which were ever referenced (for the 'not consumed' warning)."""

    def __init__(self, given: dict[str, str | None]) -> None:
        self.given = given
        self.allowed: dict[str, str | None] = {}
        self.meta: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def for_stage(self) -> BuildArgs:
        b = BuildArgs(self.given)
        b.meta = dict(self.meta)
        b.referenced = self.referenced  # shared: one warning for the whole build
        return b

    def add(self, key: str, value: str | None) -> None:
        self.allowed[key] = value
        self.referenced.add(key)

    def _value(self, key: str, mapping: dict[str, str | None]) -> str | None:
        if self.given.get(key) is not None:
            return self.given[key]
        default = mapping.get(key)
        if default is None:
            return self.meta.get(key)
        return default

    def _all(self, mapping: dict[str, str | None]) -> dict[str, str]:
        out = {}
        for k in list(mapping) + sorted(BUILTIN_ARGS):
            if k in mapping or k in self.given:
                v = self._value(k, mapping)
                if v is not None:
                    out[k] = v
        return out

    def all_allowed(self) -> dict[str, str]:
        return self._all(self.allowed)

    def all_meta(self) -> dict[str, str]:
        return self._all(self.meta)

    def filter_allowed(self, env: list[str]) -> list[str]:
        """The allowed args that no ENV overrides, as KEY=value."""
        keys = {e.split("=", 1)[0] for e in env}
        return [f"{k}={v}" for k, v in self.all_allowed().items() if k not in keys]

    def referenced_or_not_builtin(self, key: str) -> bool:
        return key in self.allowed or key not in BUILTIN_ARGS

    def unused(self) -> list[str]:
        return sorted(k for k in self.given if k not in self.referenced and k not in BUILTIN_ARGS)


@dataclass
class StageState:
    image_id: str = ""
    run_config: dict[str, Any] = field(default_factory=dict)
    maintainer: str = ""
    cmd_set: bool = False
    args: BuildArgs | None = None
    name: str = ""
    platform: str | None = None
    cache_busted: bool = False


def env_map(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


class Builder:
    def __init__(self, images: Any, containers: Any, events: Any, opts: BuildOptions, out: Output,
                 tmp_root: Path) -> None:
        self.images = images
        self.containers = containers
        self.events = events
        self.opts = opts
        self.out = out
        self.tmp_root = tmp_root
        self.lex = ShellLex()
        self.step = 0
        self.total = 0
        self.tmp_containers: list[str] = []
        self.stage_images: dict[int, str] = {}  # index -> the image a built stage ended with
        self.stage_names: dict[str, int] = {}
        self.cache_sources: list[str] = []

    # -- the whole build ----------------------------------------------------------------------------------------
    async def build(self, ctx: BuildContext) -> str:
        df = parse(ctx.dockerfile, ctx.dockerfile_name)
        self.lex = ShellLex(df.escape)
        for w in df.warnings:
            self.out.line(f"[Warning] {w}")
        stages = df.stages
        if self.opts.target:
            idx = df.stage_index(self.opts.target)
            if idx is None:
                raise InvalidArgument(f"target stage {json.dumps(self.opts.target)} could not be found")
            stages = stages[: idx + 1]
        if self.opts.labels:
            last = stages[-1]
            for k in sorted(self.opts.labels):
                last.commands.append(Instruction("LABEL", [k, self.opts.labels[k]], f"LABEL {k}={self.opts.labels[k]}",
                                                 last.line, flags={"noexpand": True}))
        args = BuildArgs(self.opts.buildargs)
        for a in df.meta_args:
            self._meta_arg(a, args)
        needed = self._needed(stages, args)
        self.total = len(df.meta_args) + sum(1 + len(s.commands) for s in stages if s.index in needed)
        self.cache_sources = await self._cache_from()
        self.step = 0
        for a in df.meta_args:
            self._print_step(str(a))
        state = StageState()
        seen: set[str] = set()
        for stage in stages:
            if stage.name and stage.name in seen:
                raise InvalidArgument(f"{stage.name} stage name already used")
            seen.add(stage.name)
        try:
            for stage in stages:
                if stage.index not in needed:
                    continue
                state = await self._run_stage(stage, args, ctx, df)
                self.stage_images[stage.index] = state.image_id
                if stage.name:
                    self.stage_names[stage.name] = stage.index
                if state.image_id:
                    self.out.aux({"ID": state.image_id})
        finally:
            if self.opts.forcerm:
                await self._remove_containers()
        unused = args.unused()
        if unused:
            self.out.line(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        if not state.image_id:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return state.image_id

    def _needed(self, stages: list[Stage], args: BuildArgs) -> set[int]:
        """The stages the last one depends on (FROM <stage>, COPY --from=<stage>), BuildKit's pruning."""
        by_name = {s.name: s.index for s in stages if s.name}
        deps: dict[int, set[int]] = {}
        meta = args.all_meta()
        for s in stages:
            d: set[int] = set()
            with contextlib.suppress(InvalidArgument):
                base = self.lex.process_word(s.base, meta).lower()
                if base in by_name and by_name[base] < s.index:
                    d.add(by_name[base])
            for c in s.commands:
                ref = str(c.flags.get("from", "")).lower() if c.name == "COPY" else ""
                if ref in by_name:
                    d.add(by_name[ref])
                elif ref.isdigit() and int(ref) < s.index:
                    d.add(int(ref))
            deps[s.index] = d
        needed: set[int] = set()
        todo = [stages[-1].index]
        while todo:
            i = todo.pop()
            if i not in needed:
                needed.add(i)
                todo.extend(deps.get(i, ()))
        return needed

    def _print_step(self, text: str) -> None:
        self.step += 1
        self.out.line(f"Step {self.step}/{self.total} : {text}")

    def _meta_arg(self, a: Instruction, args: BuildArgs) -> None:
        env = args.all_allowed()
        for raw in a.args:
            k, eq, v = raw.partition("=")
            value = self.lex.process_word(v, env) if eq else None
            args.add(k, value)
            args.meta[k] = value

    def _from_sources(self, image_id: str) -> bool:
        """Whether `image_id` is one of the --cache-from images or an ancestor of one (its Parent chain)."""
        for source in self.cache_sources:
            seen: set[str] = set()
            cur = source
            while cur and cur not in seen:
                if cur == image_id:
                    return True
                seen.add(cur)
                cur = self.images.meta.parent_of(cur)
        return False

    async def _cache_from(self) -> list[str]:
        out = []
        for name in self.opts.cachefrom:
            image_id = await asyncio.to_thread(self.images.resolve, name)
            if image_id:
                out.append(image_id)
        return out

    # -- a stage ------------------------------------------------------------------------------------------------
    async def _run_stage(self, stage: Stage, base_args: BuildArgs, ctx: BuildContext, df: Dockerfile) -> StageState:
        st = StageState(args=base_args.for_stage(), name=stage.name)
        assert st.args is not None
        self._print_step(stage.original)
        meta = st.args.all_meta()
        platform = self.opts.platform or None
        if stage.platform:
            platform = self.lex.process_word(stage.platform, meta)
        st.platform = platform
        base = self.lex.process_word(stage.base, meta)
        if not base:
            raise InvalidArgument(f"base name ({stage.base}) should not be blank")
        stage_ix = df.stage_index(base)
        if stage_ix is not None and stage_ix in self.stage_images:
            image_id = self.stage_images[stage_ix]
        elif base.lower() == "scratch":
            image_id = ""
        else:
            image_id = await self._image(base, platform)
        st.image_id = image_id
        if image_id:
            rec = await asyncio.to_thread(self.images.get, image_id)
            st.run_config = copy.deepcopy(rec.container_config)
        else:
            st.run_config = {"Env": None, "Cmd": None, "Entrypoint": None}
        env = list(st.run_config.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.append(f"PATH={DEFAULT_PATH}")
        st.run_config["Env"] = env
        st.run_config["OpenStdin"] = False
        st.run_config["StdinOnce"] = False
        self._update_image(st)
        self.out.line(f" ---> {_short(st.image_id)}" if st.image_id else " ---> ")
        triggers = list(st.run_config.get("OnBuild") or [])
        if triggers:
            st.run_config["OnBuild"] = None
            self.out.line(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
            for t in triggers:
                self._update_image(st)
                await self._dispatch(st, parse_trigger(t), ctx, df)
        for cmd in stage.commands:
            self._print_step(str(cmd))
            await self._dispatch(st, cmd, ctx, df)
            self._update_image(st)
            self.out.line(f" ---> {_short(st.image_id)}")
        return st

    @staticmethod
    def _update_image(st: StageState) -> None:
        st.run_config["Image"] = st.image_id

    async def _image(self, ref: str, platform: str | None, *, local_only: bool = False) -> str:
        """A base (or --from) image: the local one unless `pull`, else pulled with the build's registry auth."""
        image_id = None if self.opts.pull and not local_only else await asyncio.to_thread(self.images.resolve, ref)
        if image_id:
            return str(image_id)
        if local_only:
            raise NotFound(f"No such image: {ref}")
        from engine.images.reference import parse as parse_ref

        try:
            r = parse_ref(ref)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid reference format: {e.message}") from None
        auth = self.opts.registry_auths.get(r.domain) or self.opts.registry_auths.get(
            "https://index.docker.io/v1/" if r.domain == "docker.io" else "") or None
        rec = await self.images.pull(str(r), platform=platform, auth=auth, progress=self.out.progress)
        self.events.publish("image", "pull", str(r), {"name": str(r)})
        return str(rec.id)

    # -- steps --------------------------------------------------------------------------------------------------
    def _envs(self, st: StageState) -> dict[str, str]:
        assert st.args is not None
        env = list(st.run_config.get("Env") or [])
        return env_map(env + st.args.filter_allowed(env))

    def _word(self, st: StageState, word: str) -> str:
        return self.lex.process_word(word, self._envs(st))

    async def _dispatch(self, st: StageState, c: Instruction, ctx: BuildContext, df: Dockerfile) -> None:
        if c.heredocs:
            raise InvalidArgument(f"the heredoc syntax of {c.name} {BUILDKIT_ONLY}")
        fn = getattr(self, f"_do_{c.name.lower()}")
        await fn(st, c, ctx)
        if self.opts.rm and not self.opts.forcerm:
            # rm: the step's container goes once the step succeeded; a failed one is kept (forcerm removes it
            # too, at the end of the build), as dockerd does
            await self._remove_containers()

    async def _commit(self, st: StageState, comment: str, *, words: bool = True) -> None:
        """A metadata-only step: `#(nop)` probe, cache hit or a config-only image."""
        shell = list(st.run_config.get("Shell") or DEFAULT_SHELL)
        probe = self._copy_config(st, Cmd=[*shell, "#(nop) ", comment] if words else [*shell, "#(nop) " + comment])
        if await self._probe(st, probe):
            return
        rec = await asyncio.to_thread(
            lambda: buildstep.commit_step(self.images, parent_id=st.image_id, run_config=self._copy_config(st),
                                          container_config=probe, created_by=" ".join(probe["Cmd"]),
                                          author=st.maintainer, platform=st.platform))
        st.image_id = rec.id

    def _copy_config(self, st: StageState, **changes: Any) -> dict[str, Any]:
        cfg = copy.deepcopy(st.run_config)
        cfg.update(changes)
        return cfg

    async def _probe(self, st: StageState, probe: dict[str, Any]) -> bool:
        if self.opts.nocache or st.cache_busted:
            return False
        hit = await asyncio.to_thread(buildstep.cached_child, self.images, st.image_id, probe, st.platform)
        if hit and self.opts.cachefrom and not await asyncio.to_thread(self._from_sources, hit):
            # moby's ImageCache with sources: a local step counts only when one of the --cache-from images
            # descends from it (none found: no cache at all)
            hit = ""
        if not hit and self.cache_sources:
            hit = await asyncio.to_thread(buildstep.history_hit, self.images, st.image_id, probe,
                                          self.cache_sources)
        if not hit:
            st.cache_busted = True
            return False
        self.out.line(" ---> Using cache")
        st.image_id = hit
        return True

    async def _do_env(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        envs = self._envs(st)
        env = list(st.run_config.get("Env") or [])
        parts = []
        for k, v in zip(c.args[0::2], c.args[1::2], strict=False):
            k, v = self.lex.process_word(k, envs), self.lex.process_word(v, envs)
            new = f"{k}={v}"
            parts.append(new)
            for i, e in enumerate(env):
                if e.split("=", 1)[0] == k:
                    env[i] = new
                    break
            else:
                env.append(new)
        st.run_config["Env"] = env
        await self._commit(st, "ENV " + " ".join(parts))

    async def _do_label(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        envs = self._envs(st)
        labels = dict(st.run_config.get("Labels") or {})
        parts = []
        for k, v in zip(c.args[0::2], c.args[1::2], strict=False):
            if not c.flags.get("noexpand"):
                k, v = self.lex.process_word(k, envs), self.lex.process_word(v, envs)
            labels[k] = v
            parts.append(f'{json.dumps(k) if " " in k else k}={json.dumps(v)}')
        st.run_config["Labels"] = labels
        await self._commit(st, "LABEL " + " ".join(parts))

    async def _do_maintainer(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        st.maintainer = c.args[0]
        await self._commit(st, "MAINTAINER " + c.args[0])

    def _cmdline(self, st: StageState, c: Instruction) -> list[str] | None:
        if c.json:
            return list(c.args)
        if not c.args:
            return None
        return [*list(st.run_config.get("Shell") or DEFAULT_SHELL), " ".join(c.args)]

    async def _do_cmd(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        cmd = self._cmdline(st, c) or []
        st.run_config["Cmd"] = cmd
        st.run_config["ArgsEscaped"] = False
        await self._commit(st, "CMD " + _go_quote_list(cmd))
        if c.args:
            st.cmd_set = True

    async def _do_entrypoint(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        ep = self._cmdline(st, c)
        st.run_config["Entrypoint"] = ep
        st.run_config["ArgsEscaped"] = False
        if not st.cmd_set:
            st.run_config["Cmd"] = None
        await self._commit(st, "ENTRYPOINT " + _go_quote_list(ep or []))

    async def _do_shell(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        st.run_config["Shell"] = list(c.args)
        await self._commit(st, f"SHELL [{' '.join(c.args)}]")

    async def _do_user(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        user = self._word(st, c.args[0])
        st.run_config["User"] = user
        await self._commit(st, f"USER {user}")

    async def _do_volume(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        envs = self._envs(st)
        vols = dict(st.run_config.get("Volumes") or {})
        names = []
        for v in c.args:
            v = self.lex.process_word(v.strip(), envs)
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
            names.append(v)
        st.run_config["Volumes"] = vols
        await self._commit(st, f"VOLUME [{' '.join(names)}]")

    async def _do_stopsignal(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        from engine.containers.manager import parse_signal

        sig = self._word(st, c.args[0])
        parse_signal(sig)
        st.run_config["StopSignal"] = sig
        await self._commit(st, f"STOPSIGNAL {sig}")

    async def _do_expose(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        envs = self._envs(st)
        ports: list[str] = []
        for p in sorted(c.args):
            ports.extend(self.lex.process_words(p, envs))
        exposed = dict(st.run_config.get("ExposedPorts") or {})
        for p in ports:
            for key in _port_keys(p):
                exposed[key] = {}
        st.run_config["ExposedPorts"] = exposed
        await self._commit(st, "EXPOSE " + " ".join(ports))

    async def _do_arg(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        assert st.args is not None
        envs = self._envs(st)
        parts = []
        for raw in c.args:
            k, eq, v = raw.partition("=")
            value = self.lex.process_word(v, envs) if eq else None
            st.args.add(k, value)
            parts.append(f"{k}={value}" if value is not None else k)
        await self._commit(st, "ARG " + " ".join(parts), words=True)

    async def _do_onbuild(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        st.run_config["OnBuild"] = [*(st.run_config.get("OnBuild") or []), c.args[0]]
        await self._commit(st, "ONBUILD " + c.args[0])

    async def _do_healthcheck(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        hc = _healthcheck(c)
        old = st.run_config.get("Healthcheck")
        if old and (old.get("Test") or ["NONE"])[0] != "NONE":
            self.out.line(f"Note: overriding previous HEALTHCHECK: [{' '.join(old.get('Test') or [])}]")
        st.run_config["Healthcheck"] = hc
        await self._commit(st, f"HEALTHCHECK &{{[{' '.join(hc['Test'])}] {_go_duration(hc.get('Interval', 0))} "
                               f"{_go_duration(hc.get('Timeout', 0))} {_go_duration(hc.get('StartPeriod', 0))} "
                               f"{_go_duration(hc.get('StartInterval', 0))} {hc.get('Retries', 0)}}}")

    async def _do_workdir(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        path = self._word(st, c.args[0])
        cur = st.run_config.get("WorkingDir") or ""
        wd = os.path.normpath(path if path.startswith("/") else "/" + cur.strip("/") + "/" + path)
        st.run_config["WorkingDir"] = wd
        shell = list(st.run_config.get("Shell") or DEFAULT_SHELL)
        probe = self._copy_config(st, Cmd=[*shell, f"#(nop) WORKDIR {wd}"])
        if await self._probe(st, probe):
            return

        def make(rootfs: Path) -> None:
            cp.make_dirs(rootfs, wd)

        await self._layer_step(st, probe, make)

    async def _layer_step(self, st: StageState, probe: dict[str, Any], work: Callable[[Path], None]) -> None:
        """A step that writes files without running anything (COPY, ADD, WORKDIR): a layer over the current
        image is mounted, written, committed, and dropped whatever happens."""
        lid = "build-" + ids.new_id()[:52]
        target = Path(tempfile.mkdtemp(prefix="pst-build-mnt-", dir=self.tmp_root))

        def run() -> Any:
            layer = self.images.create_container_layer(lid, st.image_id or None)
            mounted = False
            try:
                layer.mount(target)
                mounted = True
                work(target)
                layer.unmount(target)
                mounted = False
                return buildstep.commit_step(
                    self.images, parent_id=st.image_id, run_config=self._copy_config(st), container_config=probe,
                    created_by=" ".join(probe["Cmd"]), layer=None if _empty_dir(layer.upper_dir) else layer,
                    author=st.maintainer, platform=st.platform, adopt_upper=True)
            finally:
                if mounted:
                    layer.unmount(target)
                layer.remove()
                with contextlib.suppress(OSError):
                    target.rmdir()

        rec = await asyncio.to_thread(run)
        st.image_id = rec.id

    async def _do_copy(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        await self._copy(st, c, ctx, add=False)

    async def _do_add(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        await self._copy(st, c, ctx, add=True)

    async def _copy(self, st: StageState, c: Instruction, ctx: BuildContext, *, add: bool) -> None:
        name = "ADD" if add else "COPY"
        for flag in ("link", "parents", "exclude", "checksum", "keep-git-dir", "unpack"):
            if flag in c.flags:
                raise InvalidArgument(f"the --{flag} option {BUILDKIT_ONLY}")
        envs = self._envs(st)
        words = [self.lex.process_word(a, envs) for a in c.args]
        srcs, dest = words[:-1], words[-1]
        chown = self.lex.process_word(str(c.flags.get("chown", "")), envs)
        chmod = cp.parse_chmod(self.lex.process_word(str(c.flags.get("chmod", "")), envs))
        dest = cp.normalize_dest(str(st.run_config.get("WorkingDir") or ""), dest)
        from_ref = str(c.flags.get("from", "")) if not add else ""
        cleanups: list[Callable[[], None]] = []
        try:
            if from_ref:
                root = await self._from_root(st, from_ref, cleanups)
                sources = await asyncio.to_thread(cp.resolve_sources, root, srcs, in_context=False)
            else:
                if not add and any(_is_url(s) for s in srcs):
                    raise InvalidArgument("COPY failed: source can't be a URL for COPY")
                sources = []
                for s in srcs:
                    if _is_url(s):
                        sources.append(await self._download(s, dest, cleanups))
                    else:
                        sources.extend(await asyncio.to_thread(ctx.resolve, [s]))
            if len(sources) > 1 and not dest.endswith("/"):
                raise InvalidArgument(f"When using {name} with more than one source file, the destination must be "
                                      "a directory and end with a /")
            shell = list(st.run_config.get("Shell") or DEFAULT_SHELL)
            flags = (f"--chown={chown} " if chown else "") + (f"--chmod={chmod:o} " if chmod is not None else "")
            comment = f"{name} {flags}{cp.sources_hash(sources)} in {dest} "
            probe = self._copy_config(st, Cmd=[*shell, "#(nop) " + comment])
            if await self._probe(st, probe):
                return
            if not from_ref:
                await asyncio.to_thread(ctx.materialize)  # a miss: now the files are needed

            def work(rootfs: Path) -> None:
                owner = cp.Owner(None, None) if from_ref and not chown else cp.Owner(0, 0)
                if chown:
                    owner = cp.chown_owner(rootfs, chown)
                cp.copy_into(rootfs, dest, sources, owner=owner, chmod=chmod, decompress=add, cmd=name)

            await self._layer_step(st, probe, work)
        finally:
            for fn in reversed(cleanups):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(fn)

    async def _from_root(self, st: StageState, ref: str, cleanups: list[Callable[[], None]]) -> Path:
        """COPY --from: a stage's image or any image, mounted read-only for the copy."""
        idx = self.stage_names.get(ref.lower())
        if idx is None and ref.isdigit() and int(ref) in self.stage_images:
            idx = int(ref)
        if idx is not None:
            image_id = self.stage_images[idx]
        elif ref.isdigit():
            raise InvalidArgument(f"invalid from flag value {ref}: index out of bounds")
        else:
            try:
                image_id = await self._image(ref, st.platform)
            except EngineError as e:
                raise InvalidArgument(f"invalid from flag value {ref}: {e.message}") from None
        lid = "build-from-" + ids.new_id()[:47]
        target = Path(tempfile.mkdtemp(prefix="pst-build-from-", dir=self.tmp_root))

        def mount() -> None:
            layer = self.images.create_container_layer(lid, image_id or None)
            cleanups.append(layer.remove)
            cleanups.append(target.rmdir)
            layer.mount(target)
            cleanups.append(lambda: layer.unmount(target))

        await asyncio.to_thread(mount)
        return target

    async def _download(self, url: str, dest: str, cleanups: list[Callable[[], None]]) -> cp.Source:
        """ADD <url>: the file is fetched into a private directory; mode 0600 and the Last-Modified time, never
        unpacked (Docker's rules)."""
        import aiohttp

        d = Path(tempfile.mkdtemp(prefix="pst-build-dl-", dir=self.tmp_root))
        cleanups.append(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        path = urllib.parse.urlparse(url).path
        filename = "" if path.endswith("/") else os.path.basename(path)
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as resp:
                if resp.status >= 400:
                    raise InvalidArgument(f"failed to GET {url} with status {resp.status} {resp.reason}: "
                                          f"{(await resp.text())[:200]}")
                if not filename:
                    cd = resp.headers.get("Content-Disposition", "")
                    if "filename=" in cd:
                        filename = os.path.basename(cd.split("filename=", 1)[1].strip('"; '))
                if not filename and dest.endswith("/"):
                    raise InvalidArgument(f"cannot determine filename for source {url}")
                name = filename or "__unnamed__"
                with open(d / name, "wb") as f:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        f.write(chunk)
                mtime = 0.0
                if lm := resp.headers.get("Last-Modified"):
                    import email.utils

                    with contextlib.suppress(TypeError, ValueError):
                        mtime = email.utils.parsedate_to_datetime(lm).timestamp()
        except aiohttp.ClientError as e:
            raise InvalidArgument(f"failed to GET {url}: {e}") from None
        os.utime(d / name, (mtime, mtime))
        os.chmod(d / name, 0o600)
        src = (await asyncio.to_thread(cp.resolve_sources, d, [name], in_context=True))[0]
        src.decompress = False
        src.mtime = mtime
        src.mode = 0o600
        return src

    async def _do_run(self, st: StageState, c: Instruction, ctx: BuildContext) -> None:
        assert st.args is not None
        for flag in c.flags:
            raise InvalidArgument(f"the --{flag} option {BUILDKIT_ONLY}")
        cmd = self._cmdline(st, c) or []
        env = list(st.run_config.get("Env") or [])
        build_env = st.args.filter_allowed(env)
        save_cmd = cmd
        if build_env:
            keep = sorted(e for e in build_env if st.args.referenced_or_not_builtin(e.split("=", 1)[0]))
            save_cmd = [f"|{len(keep)}", *keep, *cmd]
        probe = self._copy_config(st, Cmd=save_cmd, ArgsEscaped=False)
        if save_cmd:
            probe["Entrypoint"] = None
        if await self._probe(st, probe):
            return
        run_config = self._copy_config(st, Cmd=cmd, ArgsEscaped=False, Env=env + build_env,
                                       Healthcheck={"Test": ["NONE"]})
        if save_cmd:
            run_config["Entrypoint"] = [""]
        cid = await self._create(run_config)
        code = await self._run(cid)
        if code != 0:
            raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)

        def commit() -> Any:
            layer = self.images.container_layer(cid)
            return buildstep.commit_step(
                self.images, parent_id=st.image_id, run_config=self._copy_config(st), container_config=probe,
                created_by=" ".join(probe["Cmd"]), layer=None if _empty_dir(layer.upper_dir) else layer,
                author=st.maintainer, platform=st.platform, container_id=cid,
                # the step's container goes right after this unless rm is off: then it keeps its upper dir
                adopt_upper=self.opts.rm or self.opts.forcerm)

        rec = await asyncio.to_thread(commit)
        st.image_id = rec.id

    def _host_config(self) -> dict[str, Any]:
        o = self.opts
        mode = o.networkmode if o.networkmode not in ("", "default") else "bridge"
        hc: dict[str, Any] = {"NetworkMode": mode, "ExtraHosts": list(o.extrahosts) or None,
                              "ShmSize": o.shmsize, "Memory": o.memory, "MemorySwap": o.memswap,
                              "CpuShares": o.cpushares, "CpusetCpus": o.cpusetcpus, "CpusetMems": o.cpusetmems,
                              "CpuPeriod": o.cpuperiod, "CpuQuota": o.cpuquota, "Ulimits": o.ulimits or None,
                              "SecurityOpt": o.securityopt or None, "CgroupParent": o.cgroupparent}
        return {k: v for k, v in hc.items() if v not in (None, 0, "")} | {"NetworkMode": mode}

    async def _create(self, run_config: dict[str, Any]) -> str:
        body = {k: v for k, v in run_config.items() if v is not None}
        body["AttachStdout"] = body["AttachStderr"] = True
        body["HostConfig"] = self._host_config()
        cid, warnings = await self.containers.create(body, "")
        self.tmp_containers.append(cid)
        for w in warnings:
            self.out.line(f" ---> [Warning] {w}")
        self.out.line(f" ---> Running in {cid[:12]}")
        return str(cid)

    async def _run(self, cid: str) -> int:
        """Start the step's container with its output attached to the build stream; its exit code."""
        attach = asyncio.create_task(self.containers.attach(cid, stdin=False, stdout=True, stderr=True))
        try:
            await self.containers.start(cid)
            crashpoint("build.run")
            stream = await attach
        except BaseException:
            attach.cancel()
            raise
        try:
            if stream is not None:
                while (item := await stream.read()) is not None:
                    text = item[1].decode("utf-8", errors="replace")
                    if item[0] == STDERR:
                        # the classic builder's stderr writer: each chunk in bright red (docker-py checks for it)
                        text = f"\x1b[91m{text}\x1b[0m"
                    self.out.stream(text)
        finally:
            if stream is not None:
                await stream.close()
        rec = self.containers.get(cid)
        result = await self.containers.wait(rec, "not-running")
        return int(result.get("StatusCode", 0))

    async def _remove_containers(self) -> None:
        while self.tmp_containers:
            cid = self.tmp_containers.pop()
            try:
                await self.containers.remove(cid, force=True, volumes=True)
            except NotFound:
                continue
            except EngineError as e:
                self.out.line(f"Removing intermediate container {cid[:12]}: {e.message}")
                continue
            self.out.line(f" ---> Removed intermediate container {cid[:12]}")

    async def abandon(self) -> None:
        """A cancelled build (the client went away): its containers go, whatever rm said."""
        await self._remove_containers()


def _empty_dir(p: Path) -> bool:
    try:
        with os.scandir(p) as it:
            return not any(True for _ in it)
    except FileNotFoundError:
        return True


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _go_quote_list(items: list[str]) -> str:
    """Go's fmt %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def _go_duration(ns: int) -> str:
    from engine.containers.health import go_duration

    return go_duration(ns) if ns else "0s"


def _parse_duration(flag: str, value: str) -> int:
    from engine.images.healthcheck import parse_go_duration

    if not value:
        return 0
    ns = parse_go_duration(value)
    if ns == 0:
        return 0
    if ns < 1_000_000:
        raise InvalidArgument(f'Interval "{flag}" cannot be less than 1ms')
    return ns


def _healthcheck(c: Instruction) -> dict[str, Any]:
    typ = c.args[0].upper()
    rest = c.args[1:]
    if typ == "NONE":
        if rest:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if typ != "CMD":
        raise InvalidArgument(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    if c.json:
        test = ["CMD", *rest]
    else:
        if not rest:
            raise InvalidArgument("Missing command after HEALTHCHECK CMD")
        test = ["CMD-SHELL", " ".join(rest)]
    if len(test) == 1:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    hc: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        ns = _parse_duration(flag, str(c.flags.get(flag, "")))
        if ns:
            hc[key] = ns
    if c.flags.get("retries"):
        try:
            retries = int(c.flags["retries"])
        except ValueError:
            raise InvalidArgument(f'strconv.ParseInt: parsing "{c.flags["retries"]}": invalid syntax') from None
        if retries < 0:
            raise InvalidArgument(f"--retries cannot be negative ({retries})")
        hc["Retries"] = retries
    return hc


def _port_keys(spec: str) -> list[str]:
    """EXPOSE's port specs (`80`, `80/udp`, `8000-8002`): ExposedPorts keys, Docker's checks."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    if ":" in port:
        port = port.rsplit(":", 1)[1]
    if not port:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    lo, _, hi = port.partition("-")
    try:
        start, end = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not (0 < start <= end <= 65535):
        raise InvalidArgument(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]
