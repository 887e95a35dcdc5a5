"""Images to hosts without a registry: which layers travel (stagecraft/deploy/delivery.py).

The archives here are built the way `docker save` lays them out (manifest.json, one
config per image, one layer.tar per layer); the fleet tests load real ones."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from stagecraft.deploy.delivery import (
    layer_chains,
    needs_by_host,
    parse_inventory,
    write_partial,
)


def diff(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"layer {n}".encode()).hexdigest()


def test_chain_ids_follow_dockers_rule():
    first, second = diff(1), diff(2)
    expected = "sha256:" + hashlib.sha256(f"{first} {second}".encode()).hexdigest()
    assert layer_chains([first, second]) == [first, expected]
    assert layer_chains([]) == []


def test_the_same_layer_under_another_parent_is_another_chain():
    assert layer_chains([diff(1), diff(3)])[1] != layer_chains([diff(2), diff(3)])[1]


def test_inventory_lines_give_image_ids_and_every_prefix_chain():
    line = f"sha256:aaa {json.dumps([diff(1), diff(2)])}"
    ids, chains = parse_inventory(line + "\nnot a line\n")
    assert ids == {"sha256:aaa"}
    assert chains == set(layer_chains([diff(1), diff(2)]))


def _save_archive(path: Path, images: dict[str, list[int]]) -> None:
    """A `docker save` style archive: each image is a list of layer numbers."""
    def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    manifest = []
    with tarfile.open(path, "w") as archive:
        written: set[int] = set()
        for tag, layers in images.items():
            config = {"rootfs": {"type": "layers", "diff_ids": [diff(n) for n in layers]}}
            config_name = f"{tag.replace(':', '_')}.json"
            add(archive, config_name, json.dumps(config).encode())
            for n in layers:
                if n not in written:
                    add(archive, f"l{n}/layer.tar", b"x" * 1000 * n)
                    written.add(n)
            manifest.append({"Config": config_name, "RepoTags": [tag],
                             "Layers": [f"l{n}/layer.tar" for n in layers]})
        add(archive, "manifest.json", json.dumps(manifest).encode())


def _names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return set(archive.getnames())


def test_layers_the_host_has_are_left_out(tmp_path):
    source = tmp_path / "images.tar"
    _save_archive(source, {"app:v2": [1, 2, 5]})
    present = set(layer_chains([diff(1), diff(2)]))  # the host has v1's base
    out = io.BytesIO()
    assert write_partial(source, present, out) == (1, 2)
    assert _names(out.getvalue()) == {"app_v2.json", "l5/layer.tar", "manifest.json"}


def test_a_layer_on_the_host_under_another_parent_still_travels(tmp_path):
    source = tmp_path / "images.tar"
    _save_archive(source, {"app:v2": [1, 2]})
    present = set(layer_chains([diff(2)]))  # layer 2 as a base layer: another chain
    out = io.BytesIO()
    assert write_partial(source, present, out) == (2, 0)
    assert {"l1/layer.tar", "l2/layer.tar"} <= _names(out.getvalue())


def test_a_layer_one_image_still_needs_is_kept(tmp_path):
    source = tmp_path / "images.tar"
    _save_archive(source, {"a:1": [1], "b:1": [2, 1]})
    present = {diff(1)}  # a's only layer; b uses the same file under another parent
    out = io.BytesIO()
    sent, skipped = write_partial(source, present, out)
    assert (sent, skipped) == (2, 0)
    assert "l1/layer.tar" in _names(out.getvalue())


def test_only_hosts_that_run_images_built_here_get_any():
    by_host = {"a": ["shop-api:r1", "postgres:17"], "b": ["postgres:17"]}
    assert needs_by_host(by_host, {"shop-api:r1"}) == {"a": ["shop-api:r1"]}
