"""From an image reference to a root filesystem and back: references, registry, content, snapshots.

Reference (moved from docs/architecture.md): Images API

`engine/images/` (one module per noun: `reference`, `content`, `registry`, `auth`, `platform`, `unpack`,
`snapshots`, `mount`, `metadata`, `records`, `changes`, `progress`, `service`). The daemon uses only `ImageService`:

```python
from engine.images.service import ImageService
svc = ImageService(root, insecure_registries=[], registry_mirrors=[], docker_config=None,  # ~/.docker/config.json
                   certs_dirs=(Path("/etc/portside/certs.d"), Path("/etc/docker/certs.d")),
                   in_use=lambda image_id: [container ids])          # for rmi's 409 and prune
await svc.pull(ref, platform=None, auth=None, progress=callback)     # -> ImageRecord; callback(dict) gets Docker's
                                                                     #    JSON progress messages (Pulling fs layer,
                                                                     #    Downloading..., Pull complete, Digest, Status)
svc.get(name_or_id) -> ImageRecord      # reference, full id, or unique id prefix; NotFound "No such image: X"
svc.resolve(name_or_id) -> id | None
svc.list() -> [ImageRecord]             # newest first; rec.summary() is one /images/json entry
svc.inspect(name) -> dict               # Docker's /images/{name}/json shape
svc.history(name) -> [dict]             # /images/{name}/history
svc.tag(source, target); svc.remove(name, force=, noprune=) -> [{"Untagged"|"Deleted": ...}]
svc.prune(dangling_only=True, filters={}) -> {"ImagesDeleted": [...] | None, "SpaceReclaimed": n}
await svc.tags_of(repo) / svc.catalog(registry_host) / svc.search(term, limit=)
svc.create_container_layer(container_id, image_id) -> ContainerLayer   # image_id "" or None: empty root
svc.container_layer(container_id) -> ContainerLayer                    # re-open (after a restart)
layer.mount(target) / layer.unmount(target) / layer.remove() / layer.changes() -> [{"Path", "Kind"}]
layer.upper_dir / layer.work_dir / layer.lower_dirs (topmost first)
await svc.push(ref, auth=None, progress=callback) -> manifest digest   # HEAD checks, cross-repo mounts, uploads
svc.save(names) -> Iterator[bytes]      # docker-archive tar: manifest.json + OCI index.json/oci-layout/blobs
svc.load(fileobj, progress=None) -> ["Loaded image: nginx:latest" | "Loaded image ID: sha256:..."]
svc.import_(fileobj, repo=, tag=, changes=["CMD ...", "ENV ..."], message=, platform=) -> ImageRecord
svc.commit(layer, repo=, tag=, comment=, author=, changes=[...], config={Docker Config}) -> ImageRecord
svc.export(layer, rootfs=None) -> Iterator[bytes]           # rootfs: the mounted root of a running container
svc.path_stat(layer, path, rootfs=None) -> dict             # X-Docker-Container-Path-Stat (NotFound otherwise)
svc.archive_get(layer, path, rootfs=None) -> (stat dict, Iterator[bytes])   # docker cp out
svc.archive_put(layer, path, fileobj, rootfs=None)          # docker cp in (path must be a directory)
```

A running container's overlay cannot be mounted a second time: pass its mounted `rootfs` to export/cp; for a
stopped one leave it None and the call mounts the layer privately. cp paths resolve with openat2
RESOLVE_IN_ROOT, so symlinks and `..` in the container never lead outside it. Iterators are fed by a writer
thread through a pipe; stop reading and the thread ends.

`ImageRecord`: `id` (config digest), `config` (the image config dict), `repo_tags`, `repo_digests` (familiar form,
`nginx:latest`), `size`, `diff_ids`, `chain`, `created`, `created_unix`, `container_config` (the config's `config`
in Docker's API shape), `dangling`, `inspect()`, `summary()`.

Storage under `root`: `content/blobs/sha256/` (verified ingest: `content/ingest/<digest hex>` is resumable and
flock-ed, renamed in after size + digest check and fsync), `snapshots/<chain id hex>/{fs,meta.json}` (built under
`snapshots/tmp-<pid>-*`, renamed in),
`layers/<container id>/{upper,work}` (a removed one is renamed into `trash/` and deleted by a background
thread, emptied again at start), `images.db` (SQLite, WAL,
synchronous=FULL; an image appears in one transaction after all its blobs and snapshots exist). Layers are unpacked
by `unpack.apply_layer` with directory fds and O_NOFOLLOW: no `..`, symlink or hardlink can lead outside the
snapshot; a byte cap and a free-space reserve (`unpack.Limits`) stop decompression bombs. Overlay mounts use
mount(2), or fsconfig `lowerdir+` (kernel 6.8+) when the lower list does not fit one page.
Loopback registries are insecure by default (HTTPS without verification, then HTTP), as in Docker.

Pull pipeline: up to `max_concurrent_downloads` (4) blobs download at once; each layer is unpacked while it
downloads (a reader follows the growing ingest file), and its snapshot is renamed into place only after the blob's
size and digest verify; the diff id is checked against the config. gzip is inflated with ISA-L (`isal`) when
installed, in steps of up to 4 MiB (tar reads are served as slices); regular files stream straight from the tar.
Small files of a layer are read straight from the tar stream and created by 4 writer threads in
batches of 32 while the tar is parsed (the parser waits only for the oldest batch; anything touching a queued
path waits for all). `snapshots/` and `layers/` carry ext4's TOPDIR flag (`chattr +T`, best effort): each
snapshot lands in a block group of its own instead of the parent's, where ext4 without a journal skips the
just-freed inodes of a removed image one by one (that made the 10,000-files image 3-5x slower right after an rmi).

Parent images: `commit` records the image it was made from (inspect `Parent`, summary `ParentId`). `remove`
deletes, after the image, its parents that are untagged, unused and childless (`noprune=True` keeps them);
deleting an image that others are made from is Docker's hard 409 "image has dependent child images"; untagging
the last tag of such an image keeps it; `prune` takes a parent after its last child; `/images/json` hides
untagged parents of other images unless `all=1`.
"""
