"""The image builder: Dockerfile parsing, the classic builder's steps and cache (`POST /build`).

It sits above the image store and the container runtime and uses them only through their services
(`ImageService`, `ContainerManager`); nothing below it imports it.

The image builder (engine/build)
================================

`POST /build` (engine/api/build.py, thin: query parameters to `BuildOptions`, the body to a temp file, the
builder's messages written as Docker's JSON stream) runs `BuildService.build` (engine/build/service.py). The
builder sits above the image store and the container manager and uses them only through their services;
nothing below it imports it (tests/test_layering.py).

```
engine/api/build.py      POST /build, /build/prune: options, stream, errors (HTTP before the first line, else errorDetail+code)
engine/build/service.py  scratch dir under <data-root>/build (swept at start), BuildCache for /system/df, builder prune
        context.py       the context: an uncompressed tar is indexed in place (tarindex.py) and unpacked only when a
                         COPY/ADD misses the cache; gzip/bzip2/xz/zstd ones are unpacked by the layer applier;
                         `remote=` URLs; .dockerignore (ignore.py: patternmatcher + the CLI's context walk)
        dockerfile.py    BuildKit's Go parser (the `dockerfile` package) for lines; the instruction layer here
        shell_lex.py     BuildKit's word expansion ($VAR, ${VAR:-x} ... as Docker 28's classic builder has it)
        builder.py       stages (unneeded ones skipped, --target), ARG scoping, every instruction, the cache probe
        copy.py          COPY/ADD sources (wildcards, symlinks in scope), cache keys, writing into a step's rootfs
engine/images/buildstep.py  a step's image: a new layer (or config only), parent link, container_config; the cache
```

A step is committed the classic builder's way: an image whose parent is the step before, its run config under
`config`, its probe (Cmd `/bin/sh -c #(nop) ENV A=1`, `|1 V=1 /bin/sh -c make`, `#(nop) COPY file:<sha> in /x`)
under `container_config`. The cache is that pair: a child of the current image whose `container_config`
matches (buildstep.cached_child, Docker's compare()); `--cache-from` matches the history of given images instead
(buildstep.history_hit). COPY/ADD keys hash each file's name, mode, owner, size, type, link and bytes, not its
mtime. RUN steps are real containers (ContainerManager create/attach/start/wait/remove) with the build's network
mode, extra hosts, shm size and limits; COPY/ADD/WORKDIR write into a container layer mounted under the scratch
dir; metadata steps make no container. A step's upper directory becomes its layer blob (ISA-L deflate) and, when
the layer is thrown away after, its snapshot by a rename (snapshots.adopt). A failed build leaves no tag; its
failed RUN container stays under `rm` as on Docker (`forcerm` or a client that goes away removes it); mounts and
temp layers never outlive the build. Differences from dockerd, on purpose: no throwaway container for metadata
steps, unneeded stages skipped (BuildKit's behaviour), `COPY --chmod` honoured.
"""
