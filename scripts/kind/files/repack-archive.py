"""Repack a multi-image `docker save` archive so that kind sees every image in it.

kind reads the first of manifest.json/repositories it meets and, for manifest.json, only manifest[0].RepoTags;
`docker save` also drops the docker.io/ prefix. A `repositories` entry is written first, listing every image
with its fully-qualified name. Usage: repack-archive.py SRC DST; prints "  archive tag: NAME:TAG" per image.
"""

import io
import json
import sys
import tarfile


def qualified(ref: str) -> str:
    """docker.io/library/x:t for x:t, docker.io/a/x:t for a/x:t, anything with a registry host unchanged."""
    name = ref.rsplit(":", 1)[0]
    first = name.split("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}" if "/" in name else f"docker.io/library/{ref}"


def main() -> None:
    """Copy SRC to DST with a leading `repositories` index and qualified RepoTags."""
    src, dst = sys.argv[1], sys.argv[2]
    with tarfile.open(src) as t:
        members = []
        for m in t.getmembers():
            f = t.extractfile(m) if m.isfile() else None
            members.append((m, f.read() if f else None))
    manifest = json.loads(next(d for m, d in members if m.name == "manifest.json" and d is not None))
    repos: dict[str, dict[str, str]] = {}
    for image in manifest:
        layer_id = image["Layers"][-1].split("/")[0]
        image["RepoTags"] = [qualified(r) for r in image.get("RepoTags") or []]
        for ref in image["RepoTags"]:
            name, tag = ref.rsplit(":", 1)
            repos.setdefault(name, {})[tag] = layer_id

    def add(out: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        out.addfile(info, io.BytesIO(data))

    with tarfile.open(dst, "w") as out:
        add(out, "repositories", json.dumps(repos).encode())
        for m, d in members:
            if m.name == "repositories":
                continue
            if m.name == "manifest.json":
                add(out, "manifest.json", json.dumps(manifest).encode())
                continue
            out.addfile(m, io.BytesIO(d) if d is not None else None)
    for name, tags in sorted(repos.items()):
        for tag in tags:
            sys.stdout.write(f"  archive tag: {name}:{tag}\n")


if __name__ == "__main__":
    main()
