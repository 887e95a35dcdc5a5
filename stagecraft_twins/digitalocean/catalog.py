"""What DigitalOcean offers: regions, sizes and distribution images, as its API lists them.

The values are public facts of DigitalOcean's catalogue (names, basic sizes and their
prices, distribution images); they are fixed so that the twin answers like the real API
for everything stagecraft and the ``community.digitalocean`` modules look up.
"""

from __future__ import annotations

import copy
from typing import Any

REGION_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"]

#: slug -> display name, in the order DigitalOcean lists them.
REGION_NAMES: dict[str, str] = {
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "ams3": "Amsterdam 3",
    "sfo3": "San Francisco 3",
    "sgp1": "Singapore 1",
    "lon1": "London 1",
    "fra1": "Frankfurt 1",
    "tor1": "Toronto 1",
    "blr1": "Bangalore 1",
    "syd1": "Sydney 1",
}

# slug, memory MiB, vcpus, disk GiB, transfer TiB, price monthly USD, price hourly USD
_SIZE_ROWS: list[tuple[str, int, int, int, float, float, float]] = [
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0, 0.00595),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0, 0.00893),
    ("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0, 0.01786),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0, 0.02679),
    ("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0, 0.03571),
    ("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0, 0.07143),
    ("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0, 0.14286),
]

# id, slug, name, distribution, min disk GiB, image size GiB, created at
_IMAGE_ROWS: list[tuple[int, str, str, str, int, float, str]] = [
    (135464003, "debian-12-x64", "12 x64", "Debian", 10, 0.89, "2023-06-13T18:07:28Z"),
    (193477839, "debian-13-x64", "13 x64", "Debian", 10, 1.02, "2025-08-12T15:21:40Z"),
    (155198752, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", 10, 2.44, "2024-04-25T16:27:22Z"),
    (129211873, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", 7, 2.21, "2023-03-23T15:26:18Z"),
]


class Catalog:
    """The regions, sizes and images of one twin; ``available_regions`` are the regions
    where resources can be made (the others are listed as not available)."""

    def __init__(self, available_regions: list[str] | None = None) -> None:
        unknown = [r for r in available_regions or [] if r not in REGION_NAMES]
        if unknown:
            raise ValueError(f"unknown region(s): {', '.join(unknown)}")
        self.available_regions = list(available_regions or REGION_NAMES)

    def region_slugs(self) -> list[str]:
        return list(REGION_NAMES)

    def region(self, slug: str) -> dict[str, Any] | None:
        """The region object, as embedded in droplets, volumes and actions."""
        if slug not in REGION_NAMES:
            return None
        available = slug in self.available_regions
        return {
            "name": REGION_NAMES[slug],
            "slug": slug,
            "features": list(REGION_FEATURES),
            "available": available,
            "sizes": [row[0] for row in _SIZE_ROWS] if available else [],
        }

    def is_available(self, region_slug: Any) -> bool:
        return isinstance(region_slug, str) and region_slug in self.available_regions

    def regions(self) -> list[dict[str, Any]]:
        return [self.region(slug) for slug in REGION_NAMES]  # type: ignore[misc]

    def size(self, slug: Any) -> dict[str, Any] | None:
        """The size object with that slug, or None."""
        for row in _SIZE_ROWS:
            if row[0] == slug:
                return self._size_object(row)
        return None

    def sizes(self) -> list[dict[str, Any]]:
        return [self._size_object(row) for row in _SIZE_ROWS]

    def _size_object(self, row: tuple[str, int, int, int, float, float, float]) -> dict[str, Any]:
        slug, memory, vcpus, disk, transfer, monthly, hourly = row
        return {
            "slug": slug,
            "memory": memory,
            "vcpus": vcpus,
            "disk": disk,
            "transfer": transfer,
            "price_monthly": monthly,
            "price_hourly": hourly,
            "regions": list(self.available_regions),
            "available": True,
            "description": "Basic",
            "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
        }

    def image(self, key: Any) -> dict[str, Any] | None:
        """The image with that id (int or digits) or slug, or None."""
        for row in _IMAGE_ROWS:
            if key == row[1] or key == row[0] or (isinstance(key, str) and key == str(row[0])):
                return self._image_object(row)
        return None

    def images(self) -> list[dict[str, Any]]:
        return [self._image_object(row) for row in _IMAGE_ROWS]

    def _image_object(self, row: tuple[int, str, str, str, int, float, str]) -> dict[str, Any]:
        image_id, slug, name, distribution, min_disk, size_gb, created_at = row
        return copy.deepcopy({
            "id": image_id,
            "name": name,
            "distribution": distribution,
            "slug": slug,
            "public": True,
            "regions": list(REGION_NAMES),
            "created_at": created_at,
            "type": "base",
            "min_disk_size": min_disk,
            "size_gigabytes": size_gb,
            "description": f"{distribution} {name}",
            "tags": [],
            "status": "available",
            "error_message": "",
        })
