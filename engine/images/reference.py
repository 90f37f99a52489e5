"""Image references in Docker's grammar (distribution/reference) with Docker's normalisation.

`nginx` -> `docker.io/library/nginx:latest`; `host:5000/a/b:tag@sha256:...` keeps its domain. Each invalid form
raises InvalidArgument with the text dockerd prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_ID = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: domain, path (repository within the domain), optional tag and digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name: `docker.io/library/nginx`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: `nginx`, `user/app`, `host:5000/app`."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_PREFIX) if self.path.count("/") == 1 else self.path
        return self.name

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def familiar(self) -> str:
        """`nginx:latest`, `host:5000/app@sha256:...` - the reference as Docker prints it."""
        out = self.familiar_name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    @property
    def tag_or_digest(self) -> str:
        return self.digest or self.tag or DEFAULT_TAG


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1 or (not any(c in name[:i] for c in ".:") and name[:i] != "localhost" and name[:i].lower() == name[:i]):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = name[:i], name[i + 1 :]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def parse(ref: str, *, default_tag: bool = True) -> Reference:
    """Parses and normalises `ref`; adds the `latest` tag when it has neither tag nor digest (unless told not)."""
    if not ref:
        raise InvalidArgument("invalid reference format")
    if _ANCHORED_ID.match(ref):
        raise InvalidArgument(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    m = _REFERENCE_RE.match(ref)
    if m is None:
        # Docker singles out uppercase repository names with their own message.
        lowered = _REFERENCE_RE.match(ref.lower())
        if lowered is not None:
            name = lowered.group(1)
            domain, rest = _split_domain(ref[: len(name)])
            if any(c.isupper() for c in rest):
                raise InvalidArgument(
                    f"invalid reference format: repository name ({rest}) must be lowercase"
                )
        raise InvalidArgument("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_MAX:
        raise InvalidArgument(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_MAX} characters"
        )
    domain, path = _split_domain(name)
    if digest is not None and not digest.startswith("sha256:"):
        raise InvalidArgument(f"invalid reference format: unsupported digest algorithm in {digest}")
    if digest is not None and not _SHA256_RE.match(digest):
        raise InvalidArgument(f"invalid reference format: invalid checksum digest length in {digest}")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def parse_repository(name: str) -> Reference:
    """Parses a repository name with no tag or digest (for `docker tag`, `docker push` targets)."""
    r = parse(name, default_tag=False)
    return r


def is_digest(s: str) -> bool:
    return bool(_DIGEST_RE.match(s))


def validate_tag(tag: str) -> str:
    if not re.fullmatch(_TAG, tag):
        raise InvalidArgument("invalid tag format")
    return tag
